//! Keys: listing a user's, blocking and unblocking, minting one under a unique alias (never retried blindly),
//! finding one by alias, deleting, and counting a member's keys of a team.

use secrecy::SecretString;
use serde_json::Value;

use super::types::{KeyCountPage, KeyListPage, KeyRow, MintedKey};
use super::{decode, ApiError, Client, ErrorClass, Retry, PAGE_SIZE};

impl Client {
    /// Every key a user owns (hashed tokens and their blocked state).
    pub async fn list_keys(&self, user_id: &str) -> Result<Vec<KeyRow>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let q = [
                ("user_id", user_id.to_string()),
                ("return_full_object", "true".to_string()),
                ("size", PAGE_SIZE.to_string()),
                ("page", page.to_string()),
            ];
            let p: KeyListPage = self.get("key/list", &q).await?;
            out.extend(p.keys);
            if page >= p.total_pages {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Blocks (`true`) or unblocks a key by its hashed token; `Ok(false)` when the key no longer exists.
    pub async fn set_key_blocked(&self, token: &str, blocked: bool) -> Result<bool, ApiError> {
        let path = if blocked { "key/block" } else { "key/unblock" };
        match self.write(path, &serde_json::json!({ "key": token })).await {
            Ok(_) => Ok(true),
            Err(e) if e.class() == ErrorClass::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Mints a key for a user under a unique alias and returns its plaintext (LiteLLM's answer is the only place
    /// it ever exists). Never retried blindly: LiteLLM finishes abandoned requests, so after a timeout or a 5xx
    /// the caller looks the alias up ([`Client::keys_by_alias`]) instead.
    pub async fn generate_key(
        &self,
        user_id: &str,
        alias: &str,
        duration: Option<&str>,
    ) -> Result<SecretString, ApiError> {
        let mut body = serde_json::json!({ "user_id": user_id, "key_alias": alias });
        if let Some(d) = duration {
            body["duration"] = Value::String(d.to_string());
        }
        let bytes = self.write_with("key/generate", &body, Retry::Unsafe).await?;
        let minted: MintedKey = decode("key/generate", &bytes)?;
        Ok(minted.key)
    }

    /// Keys with this alias (exact), whoever owns them.
    pub async fn keys_by_alias(&self, alias: &str) -> Result<Vec<KeyRow>, ApiError> {
        let q = [
            ("key_alias", alias.to_string()),
            ("return_full_object", "true".to_string()),
            ("size", PAGE_SIZE.to_string()),
        ];
        let p: KeyListPage = self.get("key/list", &q).await?;
        Ok(p.keys)
    }

    /// Deletes keys by hashed token.
    pub async fn delete_keys(&self, tokens: &[String]) -> Result<(), ApiError> {
        self.write("key/delete", &serde_json::json!({ "keys": tokens })).await.map(drop)
    }

    /// How many of a user's keys belong to a team: what `/team/member_delete` would delete.
    pub async fn count_team_keys(&self, user_id: &str, team_id: &str) -> Result<u64, ApiError> {
        let q = [("user_id", user_id.to_string()), ("team_id", team_id.to_string()), ("size", "1".to_string())];
        let p: KeyCountPage = self.get("key/list", &q).await?;
        Ok(p.total_count)
    }
}
