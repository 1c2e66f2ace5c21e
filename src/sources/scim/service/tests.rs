//! The router over a real (in-memory SQLite) store, called with `oneshot`: status codes, shapes, ETags, the
//! directory rows a write leaves for the reconciler, and the vendors' request sequences at the HTTP level. The
//! end-to-end versions (the daemon binary, LiteLLM) are in `tests/integration/scim.rs`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{Service, Settings};
use crate::directory::{SqliteStore, Store};
use crate::sources::scim::auth::hash_token;
use crate::sources::scim::mapping::ScimAttrMap;
use crate::telemetry::metrics::Metrics;

const TOKEN: &str = "lsync_test-token-for-the-router";
const BASE: &str = "/scim/v2";

struct T {
    app: Router,
    store: Arc<dyn Store>,
    svc: Arc<Service>,
    metrics: Metrics,
}

async fn setup_with(max_body: usize) -> T {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let metrics = Metrics::new().unwrap();
    let hash = hash_token(TOKEN);
    let auth =
        crate::sources::scim::auth::config::ScimAuthConfig { tokens: vec![hash], oidc: None }.validate("auth").unwrap();
    let settings = Settings {
        name: "scim".into(),
        path: BASE.into(),
        base_url: format!("http://127.0.0.1:1{BASE}"),
        attributes: ScimAttrMap::default(),
        max_body_bytes: max_body,
        max_results: 100,
    };
    let svc = Arc::new(Service::new(settings, &auth, store.clone(), metrics.clone()).unwrap());
    T { app: svc.router(), store, svc, metrics }
}

async fn setup() -> T {
    setup_with(64 * 1024).await
}

impl T {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value, axum::http::HeaderMap) {
        self.raw(method, path, body.map(|b| b.to_string()), Some("application/scim+json"), Some(TOKEN), None).await
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        content_type: Option<&str>,
        token: Option<&str>,
        if_match: Option<&str>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut b = Request::builder().method(method).uri(format!("{BASE}{path}"));
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type.filter(|_| body.is_some()) {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        if let Some(m) = if_match {
            b = b.header(header::IF_MATCH, m);
        }
        let req = b.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, v, headers)
    }

    async fn user(&self, name: &str) -> String {
        let (s, v, _) = self
            .call(
                "POST",
                "/Users",
                Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                            "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
                            "active": true})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let (s, v, _) = self
            .call(
                "POST",
                "/Groups",
                Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name,
                            "members": members})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    fn pending(&self) -> Vec<String> {
        let p = self.svc.pending.lock().unwrap();
        p.users.iter().cloned().collect()
    }

    fn take_pending(&self) {
        *self.svc.pending.lock().unwrap() = Default::default();
    }
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[tokio::test]
async fn discovery_documents_are_served() {
    let t = setup().await;
    let (s, v, h) = t.call("GET", "/ServiceProviderConfig", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/scim+json");
    assert_eq!(v["patch"]["supported"], true);
    assert_eq!(v["filter"]["maxResults"], 100);
    let (s, v, _) = t.call("GET", "/ResourceTypes", None).await;
    assert_eq!((s, v["totalResults"].as_u64()), (StatusCode::OK, Some(2)));
    assert_eq!(t.call("GET", "/ResourceTypes/User", None).await.0, StatusCode::OK);
    assert_eq!(t.call("GET", "/ResourceTypes/Nope", None).await.0, StatusCode::NOT_FOUND);
    let (s, v, _) = t.call("GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", None).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("User")));
    let (s, v, _) = t.call("GET", "/Nothing/here", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::NOT_FOUND, Some("404")));
    assert_eq!(t.call("POST", "/Bulk", Some(json!({}))).await.0, StatusCode::NOT_IMPLEMENTED);
    let (s, v, _) = t.call("DELETE", "/Users", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("405")));
}

#[tokio::test]
async fn authentication_is_required_everywhere_and_counted() {
    let t = setup().await;
    for (path, token) in [("/ServiceProviderConfig", None), ("/Users", Some("lsync_wrong")), ("/Users/x", Some("a b"))]
    {
        let (s, v, h) = t.raw("GET", path, None, None, token, None).await;
        assert!(s == StatusCode::UNAUTHORIZED || s == StatusCode::BAD_REQUEST, "{path}: {s}");
        assert!(h[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer realm=\"litellm-sync\""));
        assert_eq!(v["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    }
    let text = t.metrics.render();
    assert!(
        text.contains(
            r#"litellm_sync_scim_auth_failures_total{method="static",reason="unknown_token",source="scim"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"litellm_sync_scim_auth_failures_total{method="none",reason="missing",source="scim"} 1"#));
    assert!(text.contains(
        r#"litellm_sync_scim_requests_total{method="GET",resource="Users",source="scim",status_class="4xx"}"#
    ));
    assert_eq!(t.store.scim_count("scim", crate::directory::ScimKind::User).await.unwrap(), 0);
}

#[tokio::test]
async fn bad_bodies_get_scim_errors_and_change_nothing() {
    let t = setup_with(2048).await;
    let user = |s: &str| Some(s.to_string());
    type Case<'a> = (Option<String>, Option<&'a str>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (user("{not json"), Some("application/scim+json"), 400, Some("invalidSyntax")),
        (user(r#"{"userName": "x"}"#), Some("application/json"), 400, Some("invalidSyntax")),
        (
            user(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "x"}"#),
            Some("application/scim+json"),
            400,
            Some("invalidSyntax"),
        ),
        (
            user(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x", "active": "maybe"}"#),
            Some("application/scim+json; charset=utf-8"),
            400,
            Some("invalidValue"),
        ),
        (
            user(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x"}"#),
            Some("text/plain"),
            415,
            None,
        ),
        (user(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x"}"#), None, 415, None),
        (Some(format!(r#"{{"schemas": [], "x": "{}"}}"#, "a".repeat(4096))), Some("application/json"), 413, None),
    ];
    for (body, ct, status, scim_type) in cases {
        let (s, v, _) = t.raw("POST", "/Users", body.clone(), ct, Some(TOKEN), None).await;
        assert_eq!(s.as_u16(), status, "{body:?} {ct:?}: {v}");
        assert_eq!(v["status"], status.to_string());
        assert_eq!(v["scimType"].as_str(), scim_type, "{v}");
    }
    // A chunked body without Content-Length is cut at the limit too.
    let big = format!(r#"{{"schemas": [], "x": "{}"}}"#, "a".repeat(4096));
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(axum::body::Bytes::from(big))]);
    let req = Request::builder()
        .method("POST")
        .uri(format!("{BASE}/Users"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/scim+json")
        .body(Body::from_stream(stream))
        .unwrap();
    assert_eq!(t.app.clone().oneshot(req).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    for (q, scim_type) in [
        ("filter=userName%20eq", "invalidFilter"),
        ("filter=active%20gt%20true", "invalidFilter"),
        ("filter=((((userName%20eq%20%22x%22", "invalidFilter"),
        ("startIndex=abc", "invalidValue"),
    ] {
        let (s, v, _) = t.call("GET", &format!("/Users?{q}"), None).await;
        assert_eq!((s, v["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some(scim_type)), "{q}: {v}");
    }
    assert_eq!(t.store.scim_count("scim", crate::directory::ScimKind::User).await.unwrap(), 0);
    assert!(t.pending().is_empty());
}

#[tokio::test]
async fn user_life_cycle_with_etags_uniqueness_and_rows() {
    let t = setup().await;
    let id = t.user("alice").await;
    assert_eq!(t.pending(), vec![id.clone()], "a write marks its user for the reconciler");
    let (s, v, h) = t.call("GET", &format!("/Users/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let etag = v["meta"]["version"].as_str().unwrap().to_string();
    assert_eq!(h[header::ETAG], etag.as_str());
    assert_eq!(v["meta"]["location"], format!("http://127.0.0.1:1/scim/v2/Users/{id}"));
    assert!(v.get("password").is_none());
    // Uniqueness, any case.
    let dup = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ALICE"});
    let (s, v, _) = t.call("POST", "/Users", Some(dup)).await;
    assert_eq!((s, v["scimType"].as_str()), (StatusCode::CONFLICT, Some("uniqueness")));
    // If-Match: a stale version is 412, the current one goes through.
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice",
                     "displayName": "Alice A", "active": true});
    let (s, ..) = t
        .raw(
            "PUT",
            &format!("/Users/{id}"),
            Some(put.to_string()),
            Some("application/scim+json"),
            Some(TOKEN),
            Some("W/\"stale\""),
        )
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, v, _) = t
        .raw(
            "PUT",
            &format!("/Users/{id}"),
            Some(put.to_string()),
            Some("application/scim+json"),
            Some(TOKEN),
            Some(&etag),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["displayName"], "Alice A");
    assert_ne!(v["meta"]["version"].as_str(), Some(etag.as_str()));
    // The directory's rows: what the reconciler plans.
    let view = t.store.last_snapshot("scim").await.unwrap().unwrap();
    assert_eq!(view.users.len(), 1);
    assert_eq!(view.users[0].display_name.as_deref(), Some("Alice A"));
    assert_eq!(view.users[0].email, None, "PUT replaced the e-mail away");
    // Okta's deactivation: a path-less replace.
    let (s, v, _) = t
        .call("PATCH", &format!("/Users/{id}"), Some(patch(json!([{"op": "replace", "value": {"active": false}}]))))
        .await;
    assert_eq!((s, v["active"].as_bool()), (StatusCode::OK, Some(false)), "{v}");
    assert!(!t.store.last_snapshot("scim").await.unwrap().unwrap().users[0].active);
    let (s, v, _) = t
        .call("PATCH", &format!("/Users/{id}"), Some(patch(json!([{"op": "replace", "path": "nosuch", "value": 1}]))))
        .await;
    assert_eq!((s, v["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidPath")));
    assert_eq!(t.call("DELETE", &format!("/Users/{id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(t.call("DELETE", &format!("/Users/{id}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(t.call("GET", &format!("/Users/{id}"), None).await.0, StatusCode::NOT_FOUND);
    assert!(t.store.last_snapshot("scim").await.unwrap().unwrap().users.is_empty());
}

#[tokio::test]
async fn lists_filter_page_and_project() {
    let t = setup().await;
    let ids = [t.user("u1").await, t.user("u2").await, t.user("u3").await];
    let (s, v, _) = t.call("GET", "/Users?startIndex=2&count=1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["totalResults"].as_u64(), v["itemsPerPage"].as_u64(), v["startIndex"].as_u64()),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(v["Resources"][0]["id"], ids[1].as_str(), "stable creation order");
    // Okta's lookup before create: one hit, any case; a miss is an empty list.
    let (_, v, _) = t.call("GET", "/Users?filter=userName%20eq%20%22U2%22&startIndex=1&count=100", None).await;
    assert_eq!((v["totalResults"].as_u64(), v["Resources"][0]["id"].as_str()), (Some(1), Some(ids[1].as_str())));
    let (s, v, _) = t.call("GET", "/Users?filter=userName%20eq%20%22nobody%22", None).await;
    assert_eq!(
        (s, v["totalResults"].as_u64(), v["Resources"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0), Some(0))
    );
    // Entra's e-mail dialect, and Test Connection's random id.
    let (_, v, _) = t
        .call("GET", "/Users?filter=emails%5Btype%20eq%20%22work%22%5D.value%20eq%20%22u3%40example.com%22", None)
        .await;
    assert_eq!(v["totalResults"], 1, "{v}");
    let (s, v, _) = t.call("GET", "/Users?filter=id%20eq%20%22d5ad4e3f-0000-4000-8000-000000000000%22", None).await;
    assert_eq!((s, v["totalResults"].as_u64()), (StatusCode::OK, Some(0)));
    let (_, v, _) = t.call("GET", "/Users?filter=externalId%20eq%20%22x%22", None).await;
    assert_eq!(v["totalResults"], 0);
    // No index: a scan, confirmed by the evaluator.
    let (_, v, _) =
        t.call("GET", "/Users?filter=userName%20sw%20%22u%22%20and%20not%20(userName%20eq%20%22u1%22)", None).await;
    assert_eq!(v["totalResults"], 2);
    // A second address finds its user too (the index holds every address, not only the preferred one).
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "multi",
                      "emails": [{"value": "multi@work.example", "type": "work", "primary": true},
                                 {"value": "Multi@Home.example", "type": "home"}]});
    let (s, created, _) = t.call("POST", "/Users", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let (_, v, _) = t.call("GET", "/Users?filter=emails.value%20eq%20%22multi%40home.example%22", None).await;
    assert_eq!((v["totalResults"].as_u64(), &v["Resources"][0]["id"]), (Some(1), &created["id"]), "{v}");
    let (_, v, _) = t
        .call("GET", "/Users?filter=emails%5Btype%20eq%20%22work%22%5D.value%20eq%20%22multi%40home.example%22", None)
        .await;
    assert_eq!(v["totalResults"], 0, "the value filter is still applied: {v}");
    let (s, _, _) = t.call("DELETE", &format!("/Users/{}", created["id"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v, _) = t.call("GET", "/Users?attributes=userName", None).await;
    let first = &v["Resources"][0];
    assert!(first.get("emails").is_none() && first.get("userName").is_some() && first.get("id").is_some(), "{first}");
    let (_, v, _) = t.call("GET", "/Users?count=0", None).await;
    assert_eq!((v["totalResults"].as_u64(), v["Resources"].as_array().map(Vec::len)), (Some(3), Some(0)));
}

#[tokio::test]
async fn groups_memberships_and_derived_groups() {
    let t = setup().await;
    let (a, b) = (t.user("a").await, t.user("b").await);
    t.take_pending();
    let g = t.group("Engineering", &[&a]).await;
    assert_eq!(t.pending(), vec![a.clone()]);
    let (_, v, _) = t.call("GET", &format!("/Users/{a}"), None).await;
    assert_eq!(v["groups"][0]["value"], g.as_str(), "{v}");
    assert_eq!(v["groups"][0]["display"], "Engineering");
    // Okta: remove one, add another, in one request; Entra: 204.
    t.take_pending();
    let ops = json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")},
                     {"op": "add", "path": "members", "value": [{"value": b, "display": "b"}]}]);
    let (s, v, h) = t.call("PATCH", &format!("/Groups/{g}"), Some(patch(ops))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(h.get(header::ETAG).is_some());
    let mut touched = t.pending();
    touched.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(touched, want);
    let members = t.store.scim_members("scim", &g).await.unwrap();
    assert_eq!(members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), vec![b.as_str()]);
    // Entra's forms of removal and excludedAttributes=members.
    let ops = json!([{"op": "Remove", "path": "members", "value": [{"value": b}]}]);
    assert_eq!(t.call("PATCH", &format!("/Groups/{g}"), Some(patch(ops))).await.0, StatusCode::NO_CONTENT);
    assert!(t.store.scim_members("scim", &g).await.unwrap().is_empty());
    let ops = json!([{"op": "Add", "path": "members", "value": [{"value": a}, {"value": b}]}]);
    assert_eq!(t.call("PATCH", &format!("/Groups/{g}"), Some(patch(ops))).await.0, StatusCode::NO_CONTENT);
    let (_, v, _) = t.call("GET", &format!("/Groups/{g}?excludedAttributes=members"), None).await;
    assert!(v.get("members").is_none() && v["displayName"] == "Engineering", "{v}");
    let (_, v, _) =
        t.call("GET", "/Groups?filter=displayName%20eq%20%22engineering%22&excludedAttributes=members", None).await;
    assert_eq!(v["totalResults"], 1);
    let (_, v, _) = t.call("GET", &format!("/Groups?filter=members%5Bvalue%20eq%20%22{a}%22%5D"), None).await;
    assert_eq!(v["totalResults"], 1, "a filter on members reads the rows: {v}");
    // Unknown members are refused and change nothing; so is a rename to a taken name.
    let ops = json!([{"op": "add", "path": "members", "value": [{"value": "nobody"}]}]);
    let (s, v, _) = t.call("PATCH", &format!("/Groups/{g}"), Some(patch(ops))).await;
    assert_eq!((s, v["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidValue")));
    assert_eq!(t.store.scim_members("scim", &g).await.unwrap().len(), 2);
    // Okta's rename: a path-less replace with id and displayName; touches every member.
    t.take_pending();
    let ops = json!([{"op": "replace", "value": {"id": g, "displayName": "Eng"}}]);
    assert_eq!(t.call("PATCH", &format!("/Groups/{g}"), Some(patch(ops))).await.0, StatusCode::NO_CONTENT);
    assert_eq!(t.pending().len(), 2);
    let view = t.store.last_snapshot("scim").await.unwrap().unwrap();
    assert_eq!(view.groups[0].name, "Eng");
    assert_eq!(view.groups[0].members.len(), 2);
    // Okta's whole-list replace, then deleting the group touches its members.
    let ops = json!([{"op": "replace", "path": "members", "value": [{"value": b}]}]);
    assert_eq!(t.call("PATCH", &format!("/Groups/{g}"), Some(patch(ops))).await.0, StatusCode::NO_CONTENT);
    assert_eq!(t.store.scim_members("scim", &g).await.unwrap().len(), 1);
    t.take_pending();
    assert_eq!(t.call("DELETE", &format!("/Groups/{g}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(t.pending(), vec![b.clone()]);
    let (_, v, _) = t.call("GET", &format!("/Users/{b}"), None).await;
    assert!(v.get("groups").is_none(), "{v}");
}

#[tokio::test]
async fn if_match_guards_patch_and_delete() {
    let t = setup().await;
    let id = t.user("carl").await;
    let (_, v, _) = t.call("GET", &format!("/Users/{id}"), None).await;
    let etag = v["meta"]["version"].as_str().unwrap().to_string();
    let off = patch(json!([{"op": "replace", "path": "active", "value": "False"}])).to_string();
    let ct = Some("application/scim+json");
    let (s, ..) = t.raw("PATCH", &format!("/Users/{id}"), Some(off.clone()), ct, Some(TOKEN), Some("W/\"old\"")).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, ..) = t.raw("DELETE", &format!("/Users/{id}"), None, None, Some(TOKEN), Some("W/\"old\"")).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, v, _) = t.raw("PATCH", &format!("/Users/{id}"), Some(off), ct, Some(TOKEN), Some(&etag)).await;
    assert_eq!((s, v["active"].as_bool()), (StatusCode::OK, Some(false)), "{v}");
    let now = v["meta"]["version"].as_str().unwrap().to_string();
    let (s, ..) = t.raw("DELETE", &format!("/Users/{id}"), None, None, Some(TOKEN), Some(&etag)).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "the version before the PATCH is stale");
    let (s, ..) = t.raw("DELETE", &format!("/Users/{id}"), None, None, Some(TOKEN), Some(&now)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_source_loop_plans_at_start_and_then_each_batch_of_writes() {
    use crate::model::SourceEvent;
    use crate::sources::{Delivery, SourceContext, SourceStatus};
    let t = setup().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Delivery>(4);
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = SourceContext {
        name: "scim".into(),
        out: tx,
        store: t.store.clone(),
        metrics: t.metrics.clone(),
        shutdown: stop.clone(),
        status: Arc::new(SourceStatus::default()),
    };
    let run = tokio::spawn(t.svc.clone().run(ctx));
    let first = rx.recv().await.unwrap();
    assert_eq!(first.event, SourceEvent::Changed { source: "scim".into(), users: Vec::new() }, "at start: the view");
    // Writes while the reconciler is busy are coalesced into the next event.
    let a = t.user("a").await;
    let b = t.user("b").await;
    let _ = first.done.send(());
    let next = rx.recv().await.unwrap();
    let SourceEvent::Changed { users, .. } = &next.event else { panic!("not a change") };
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(users, &want);
    let _ = next.done.send(());
    stop.cancel();
    run.await.unwrap();
    assert!(t.metrics.render().contains("litellm_sync_scim_push_delay_seconds_count{source=\"scim\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_member_patches_of_one_group_all_land() {
    let t = setup().await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(t.user(&format!("m{i}")).await);
    }
    let g = t.group("busy", &[]).await;
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for u in users.clone() {
        let (t, g) = (t.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            let ops = json!([{"op": "Add", "path": "members", "value": [{"value": u}]}]);
            t.call("PATCH", &format!("/Groups/{g}"), Some(patch(ops))).await.0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::NO_CONTENT, "no client without If-Match sees a lost race");
    }
    assert_eq!(t.store.scim_members("scim", &g).await.unwrap().len(), users.len());
}
