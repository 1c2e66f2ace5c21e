use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::sources::scim::error::ScimType;
use crate::sources::scim::schema::{GROUP_RESOURCE, USER_RESOURCE};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn norm(body: Value) -> Normalized {
    match normalize(&body, &USER_RESOURCE) {
        Ok(n) => n,
        Err(e) => panic!("{body}: {e}"),
    }
}

fn norm_err(body: Value, schema: &ResourceSchema) -> ScimError {
    match normalize(&body, schema) {
        Ok(n) => panic!("accepted: {}", n.resource),
        Err(e) => e,
    }
}

#[test]
fn okta_create_user_drops_password_and_read_only_groups() {
    // Okta, "SCIM 2.0 Protocol Reference", "Create the User".
    let n = norm(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    }));
    let r = &n.resource;
    assert_eq!(r["userName"], "test.user@okta.local");
    assert!(r.get("password").is_none());
    assert!(r.get("groups").is_none());
    assert_eq!(r["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    assert!(n.ignored.is_empty());
}

#[test]
fn okta_put_body_echoes_read_only_attributes() {
    // Okta, "Update the User" (PUT): the body carries id, groups and meta back; they are ignored.
    let n = norm(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "23a35c27-23d3-4c03-b4c5-6443c09e7173",
        "userName": "test.user@okta.local",
        "name": {"givenName": "Another", "middleName": "Excited", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work", "display": "test.user@okta.local"}],
        "active": true,
        "groups": [],
        "meta": {"resourceType": "User"}
    }));
    let keys: Vec<&String> = n.resource.as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["schemas", "userName", "name", "emails", "active"]);
    assert_eq!(n.resource["name"]["middleName"], "Excited");
}

#[test]
fn entra_create_user_with_nulls_unknown_attributes_and_extension() {
    // Microsoft tutorial, "Create User" (roles: []) and "Example 2. Provision a user" (nulls, unqualified
    // enterprise attributes, the misspelt extension URN, meta on input).
    let n = norm(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
        "externalId": "jyoung",
        "userName": "jyoung@testuser.com",
        "active": "True",
        "addresses": null,
        "displayName": "Joy Young",
        "emails": [{"type": "work", "value": "jyoung@Contoso.com", "primary": true}],
        "meta": {"resourceType": "User"},
        "name": {"familyName": "Young", "givenName": "Joy"},
        "phoneNumbers": null,
        "preferredLanguage": null,
        "title": null,
        "department": null,
        "manager": null,
        "roles": [],
        ENTERPRISE: {"employeeNumber": "701984", "Department": "Tours"}
    }));
    let r = &n.resource;
    assert_eq!(r["active"], true);
    assert!(r.get("addresses").is_none() && r.get("title").is_none() && r.get("meta").is_none());
    assert_eq!(r[ENTERPRISE], json!({"employeeNumber": "701984", "department": "Tours"}));
    assert_eq!(r["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]));
    assert_eq!(n.ignored, ["roles"]);
}

#[test]
fn entra_group_with_an_unknown_schema_uri() {
    // Microsoft tutorial, "Create Group".
    let n = normalize(
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"}
        }),
        &GROUP_RESOURCE,
    );
    let r = n.map(|n| n.resource).map_err(|e| e.to_string());
    assert_eq!(
        r,
        Ok(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "displayName"}))
    );
}

#[test]
fn attribute_names_are_canonicalized() {
    let n = norm(
        json!({"Schemas": ["URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER"], "USERNAME": "a", "Name": {"GIVENNAME": "b"}}),
    );
    assert_eq!(
        n.resource,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", "name": {"givenName": "b"}})
    );
}

#[test]
fn what_is_required_is_strict() {
    let e = norm_err(json!({"userName": "a"}), &USER_RESOURCE);
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e =
        norm_err(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "a"}), &USER_RESOURCE);
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e =
        norm_err(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": ""}), &USER_RESOURCE);
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    let e = norm_err(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}), &GROUP_RESOURCE);
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    let e = norm_err(
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", "active": "maybe"}),
        &USER_RESOURCE,
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    let e = norm_err(json!("text"), &USER_RESOURCE);
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e = norm_err(
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", ENTERPRISE: 5}),
        &USER_RESOURCE,
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
}

fn stored() -> Value {
    let mut r = norm(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bjensen", "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "b@x", "type": "work"}], "displayName": "Babs",
        ENTERPRISE: {"department": "Tours", "manager": {"value": "m1"}}
    }))
    .resource;
    stamp(
        &mut r,
        "2819c223",
        &USER_RESOURCE,
        Meta {
            created: "2026-11-02T10:00:00Z",
            last_modified: "2026-11-02T10:00:00Z",
            location: "/scim/v2/Users/2819c223",
        },
    );
    r
}

#[test]
fn stamp_adds_id_and_meta_with_a_stable_weak_etag() {
    let r = stored();
    assert_eq!(r["id"], "2819c223");
    assert_eq!(r["meta"]["resourceType"], "User");
    let version = r["meta"]["version"].as_str().unwrap_or_default().to_string();
    assert!(version.starts_with("W/\"") && version.len() == 3 + 32 + 1, "{version}");
    assert_eq!(etag(&r), version);
    // Key order and meta do not change the tag; content does.
    let mut reordered = Map::new();
    if let Value::Object(m) = &r {
        for (k, v) in m.iter().rev() {
            reordered.insert(k.clone(), v.clone());
        }
    }
    let mut reordered = Value::Object(reordered);
    reordered["meta"]["lastModified"] = json!("2030-01-01T00:00:00Z");
    assert_eq!(etag(&reordered), version);
    let mut changed = r.clone();
    changed["displayName"] = json!("Barbara");
    assert_ne!(etag(&changed), version);
}

#[test]
fn if_match_comparison() {
    assert!(etag_matches("W/\"abc\"", "W/\"abc\""));
    assert!(etag_matches("\"abc\"", "W/\"abc\""));
    assert!(etag_matches("\"x\", W/\"abc\"", "W/\"abc\""));
    assert!(etag_matches("*", "W/\"abc\""));
    assert!(!etag_matches("W/\"abd\"", "W/\"abc\""));
}

#[test]
fn projection() {
    let r = stored();
    let p = project(&r, Some("userName"), None, &USER_RESOURCE);
    let keys: Vec<&String> = p.as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["schemas", "userName", "id", "meta"]);
    let p = project(&r, Some("name.givenName,emails.value"), None, &USER_RESOURCE);
    assert_eq!(p["name"], json!({"givenName": "Barbara"}));
    assert_eq!(p["emails"], json!([{"value": "b@x"}]));
    let p = project(&r, Some(&format!("{ENTERPRISE}:department")), None, &USER_RESOURCE);
    assert_eq!(p[ENTERPRISE], json!({"department": "Tours"}));
    let p = project(&r, Some(ENTERPRISE), None, &USER_RESOURCE);
    assert_eq!(p[ENTERPRISE]["manager"]["value"], "m1");
    assert!(p.get("userName").is_none());
    let p = project(&r, None, Some("emails,name.familyName,id"), &USER_RESOURCE);
    assert!(p.get("emails").is_none());
    assert_eq!(p["name"], json!({"givenName": "Barbara"}));
    assert_eq!(p["id"], "2819c223");
    let p = project(&r, Some("nosuch"), None, &USER_RESOURCE);
    assert_eq!(p["userName"], "bjensen");
    let mut with_pw = r.clone();
    with_pw["password"] = json!("secret");
    assert!(project(&with_pw, None, None, &USER_RESOURCE).get("password").is_none());
}

#[test]
fn entra_get_group_excluding_members() {
    // Microsoft tutorial, "Get Group": GET /Groups/{id}?excludedAttributes=members.
    let g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g", "displayName": "d",
        "members": [{"value": "u"}], "meta": {"resourceType": "Group"}});
    let p = project(&g, None, Some("members"), &GROUP_RESOURCE);
    assert_eq!(
        p,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g", "displayName": "d", "meta": {"resourceType": "Group"}})
    );
}

#[test]
fn pagination_follows_rfc_7644() {
    assert_eq!(page(None, None, 100), Page { offset: 0, limit: 100, start_index: 1 });
    assert_eq!(page(Some(0), Some(-5), 100), Page { offset: 0, limit: 0, start_index: 1 });
    assert_eq!(page(Some(101), Some(1000), 100), Page { offset: 100, limit: 100, start_index: 101 });
    let l = list_response(vec![json!({"id": "a"})], 7, 3);
    assert_eq!(l["totalResults"], 7);
    assert_eq!(l["itemsPerPage"], 1);
    assert_eq!(l["startIndex"], 3);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("userName".to_string()),
                        Just("emails".to_string()),
                        Just("name".to_string()),
                        Just("value".to_string()),
                        Just("primary".to_string()),
                        Just("active".to_string()),
                        Just(ENTERPRISE.to_string()),
                        Just("manager".to_string()),
                        Just("members".to_string()),
                        "\\PC{0,6}"
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn random_bodies_never_panic(mut body in arb_json(), group in any::<bool>()) {
        let schema = if group { &GROUP_RESOURCE } else { &USER_RESOURCE };
        if let Value::Object(m) = &mut body {
            m.insert("schemas".into(), json!([schema.core.id]));
        }
        match normalize(&body, schema) {
            Ok(n) => {
                let _ = project(&n.resource, Some("emails.value,name"), Some("members"), schema);
                let _ = etag(&n.resource);
            }
            Err(e) => prop_assert!(e.status == 400 && e.scim_type.is_some()),
        }
    }
}
