use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::sources::scim::error::ScimType;
use crate::sources::scim::schema::{GROUP_RESOURCE, USER_RESOURCE};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "23a35c27-23d3-4c03-b4c5-6443c09e7173",
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "active": true,
        "meta": {"resourceType": "User", "version": "W/\"1\""}
    })
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b",
        "displayName": "Test SCIMv2",
        "members": [
            {"value": "89bb1940-b905-4575-9e7f-6f887cfb368e", "display": "old.user@okta.local"},
            {"value": "u-keep"}
        ]
    })
}

fn ops(operations: Value) -> PatchRequest {
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
    match PatchRequest::from_json(&body) {
        Ok(p) => p,
        Err(e) => panic!("{body}: {e}"),
    }
}

fn patch_user(operations: Value) -> Result<PatchOutcome, ScimError> {
    apply(&user(), &ops(operations), &USER_RESOURCE)
}

fn patch_group(operations: Value) -> Result<PatchOutcome, ScimError> {
    apply(&group(), &ops(operations), &GROUP_RESOURCE)
}

fn ok(r: Result<PatchOutcome, ScimError>) -> PatchOutcome {
    match r {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    }
}

fn err(r: Result<PatchOutcome, ScimError>) -> ScimError {
    match r {
        Ok(o) => panic!("succeeded: {}", o.resource),
        Err(e) => e,
    }
}

fn member_ids(v: &Value) -> Vec<&str> {
    v["members"].as_array().map(|m| m.iter().filter_map(|x| x["value"].as_str()).collect()).unwrap_or_default()
}

// ---- Okta: "SCIM 2.0 Protocol Reference" (developer.okta.com/docs/reference/scim/scim-20) ----

#[test]
fn okta_deactivate_user_without_path() {
    // "Update a specific User (PATCH)": {"op": "replace", "value": {"active": false}}
    let o = ok(patch_user(json!([{"op": "replace", "value": {"active": false}}])));
    assert_eq!(o.resource["active"], false);
    assert!(o.changed);
}

#[test]
fn okta_group_rename_carries_the_id() {
    // "Update a specific Group name": the value repeats the group's own id.
    let o = ok(patch_group(json!([{"op": "replace", "value": {
        "id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Test SCIMv20"}}])));
    assert_eq!(o.resource["displayName"], "Test SCIMv20");
    assert_eq!(o.resource["id"], "abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
    // Another id is an attempt to change a readOnly attribute.
    let e = err(patch_group(json!([{"op": "replace", "value": {"id": "other", "displayName": "x"}}])));
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
}

#[test]
fn okta_membership_patch_removes_and_adds() {
    // "Update specific Group membership": a remove by value filter and an add, in one request.
    let o = ok(patch_group(json!([
        {"op": "remove", "path": "members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
        {"op": "add", "path": "members", "value": [
            {"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"}]}
    ])));
    assert_eq!(member_ids(&o.resource), ["u-keep", "23a35c27-23d3-4c03-b4c5-6443c09e7173"]);
    assert_eq!(o.members_added, ["23a35c27-23d3-4c03-b4c5-6443c09e7173"]);
    assert_eq!(o.members_removed, ["89bb1940-b905-4575-9e7f-6f887cfb368e"]);
}

#[test]
fn okta_replace_of_the_whole_member_list() {
    // Same page: "a full push of the membership ... using the replace operation".
    let o = ok(patch_group(json!([{"op": "replace", "path": "members", "value": [
        {"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"},
        {"value": "89bb1940-b905-4575-9e7f-6f887cfb368e", "display": "test.user@okta.local"}]}])));
    assert_eq!(
        member_ids(&o.resource),
        ["23a35c27-23d3-4c03-b4c5-6443c09e7173", "89bb1940-b905-4575-9e7f-6f887cfb368e"]
    );
    assert_eq!(o.members_added, ["23a35c27-23d3-4c03-b4c5-6443c09e7173"]);
    assert_eq!(o.members_removed, ["u-keep"]);
}

#[test]
fn okta_password_sync_is_accepted_and_dropped() {
    let o = ok(patch_user(json!([{"op": "replace", "value": {"password": "1mz050nq"}}])));
    assert!(o.resource.get("password").is_none());
    assert!(!o.changed);
}

// ---- Microsoft Entra ID: "Known issues and resolutions with SCIM 2.0 protocol compliance" and
// ---- "Tutorial: Develop and plan provisioning for a SCIM endpoint" (learn.microsoft.com) ----

#[test]
fn entra_disable_user_with_a_string_boolean() {
    // Known issues, "Requests made to disable users", without the feature flag.
    let o = ok(patch_user(json!([{"op": "Replace", "path": "active", "value": "False"}])));
    assert_eq!(o.resource["active"], false);
    let o = ok(patch_user(json!([{"op": "REPLACE", "path": "active", "value": "true"}])));
    assert_eq!(o.resource["active"], true);
    assert!(!o.changed);
}

#[test]
fn entra_replace_of_several_attributes_with_paths() {
    // Known issues, "Requests to replace multiple attributes", without the feature flag.
    let o = ok(patch_user(json!([
        {"op": "Replace", "path": "displayName", "value": "Pvlo"},
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "TestBcwqnm@test.microsoft.com"},
        {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
        {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
        {"op": "Replace", "path": "externalId", "value": "Eqpj"},
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "Eqpj"}
    ])));
    let r = &o.resource;
    assert_eq!(r["displayName"], "Pvlo");
    assert_eq!(r["emails"], json!([{"primary": true, "value": "TestBcwqnm@test.microsoft.com", "type": "work"}]));
    assert_eq!(r["name"], json!({"givenName": "Gtfd", "familyName": "Pkqf"}));
    assert_eq!(r["externalId"], "Eqpj");
    assert_eq!(r[ENTERPRISE]["employeeNumber"], "Eqpj");
    assert_eq!(r["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]));
}

#[test]
fn entra_pathless_replace_with_dotted_and_urn_keys() {
    // Known issues, "Requests to replace multiple attributes", with the feature flag.
    let o = ok(patch_user(json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "TestMhvaes@test.microsoft.com"},
        {"op": "replace", "value": {
            "displayName": "Bjfe",
            "name.givenName": "Kkom",
            "name.familyName": "Unua",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq"}}
    ])));
    let r = &o.resource;
    assert_eq!(r["emails"][0]["value"], "TestMhvaes@test.microsoft.com");
    assert_eq!(r["name"], json!({"givenName": "Kkom", "familyName": "Unua"}));
    assert_eq!(r[ENTERPRISE], json!({"employeeNumber": "Aklq"}));
}

#[test]
fn pathless_extension_object_form() {
    let o =
        ok(patch_user(json!([{"op": "add", "value": {ENTERPRISE: {"department": "IT", "Manager": {"value": "m1"}}}}])));
    assert_eq!(o.resource[ENTERPRISE], json!({"department": "IT", "manager": {"value": "m1"}}));
}

#[test]
fn entra_add_members_in_a_batch() {
    // Tutorial, "Update Group [Add Members]", with `"$ref": null`; Entra batches several values.
    let o = ok(patch_group(json!([{"op": "Add", "path": "members", "value": [
        {"$ref": null, "value": "a"}, {"value": "b"}, {"value": "u-keep"}]}])));
    assert_eq!(member_ids(&o.resource), ["89bb1940-b905-4575-9e7f-6f887cfb368e", "u-keep", "a", "b"]);
    assert_eq!(o.members_added, ["a", "b"]);
    assert!(o.members_removed.is_empty());
}

#[test]
fn entra_remove_members_by_value_list() {
    // Known issues, "Requests made to remove a group member", without the feature flag.
    let o = ok(patch_group(json!([{"op": "Remove", "path": "members", "value": [
        {"value": "89bb1940-b905-4575-9e7f-6f887cfb368e"}]}])));
    assert_eq!(member_ids(&o.resource), ["u-keep"]);
    assert_eq!(o.members_removed, ["89bb1940-b905-4575-9e7f-6f887cfb368e"]);
    // With the flag: remove by value filter.
    let o = ok(patch_group(json!([{"op": "remove", "path": "members[value eq \"u-keep\"]"}])));
    assert_eq!(o.members_removed, ["u-keep"]);
}

#[test]
fn entra_work_email_is_added_when_there_is_none() {
    // Deliberate deviation from RFC 7644 §3.5.2.3 (noTarget): Entra's replace/add of
    // emails[type eq "work"].value on a user without a work email must add one (Microsoft Q&A "Entra ID patch
    // sending Add instead of Replace" shows the Add form).
    let mut u = user();
    u["emails"] = json!([{"value": "home@x", "type": "home", "primary": true}]);
    for op in ["Replace", "Add"] {
        let p = ops(json!([{"op": op, "path": "emails[type eq \"work\"].value", "value": "w@x"}]));
        let o = ok(apply(&u, &p, &USER_RESOURCE));
        assert_eq!(
            o.resource["emails"],
            json!([{"value": "home@x", "type": "home", "primary": true}, {"type": "work", "value": "w@x"}])
        );
    }
    // Without a sub-attribute there is nothing to build: noTarget, as the RFC says.
    let e = err(patch_user(json!([{"op": "replace", "path": "emails[type eq \"other\"]", "value": {"value": "o@x"}}])));
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
}

#[test]
fn entra_single_valued_and_sub_attribute_replace() {
    // Tutorial, "Update User [Single-valued properties]" and the name.givenName replace.
    let o = ok(patch_user(json!([{"op": "Replace", "path": "userName", "value": "5b50642d@testuser.com"},
        {"op": "Replace", "path": "name.givenName", "value": "x"}])));
    assert_eq!(o.resource["userName"], "5b50642d@testuser.com");
    assert_eq!(o.resource["name"], json!({"givenName": "x", "familyName": "User"}));
}

#[test]
fn entra_manager_as_an_array_with_an_unqualified_path() {
    // Tutorial, "Example 5. Request from Microsoft Entra ID to an SCIM endpoint to update a user".
    let o = ok(patch_user(json!([{"op": "Add", "path": "manager", "value": [
        {"$ref": "http://example.com/scim/Users/00aa00aa", "value": "00aa00aa"}]}])));
    assert_eq!(
        o.resource[ENTERPRISE]["manager"],
        json!({"$ref": "http://example.com/scim/Users/00aa00aa", "value": "00aa00aa"})
    );
    assert!(o.resource["schemas"].as_array().is_some_and(|s| s.contains(&json!(ENTERPRISE))));
}

// ---- RFC 7644 §3.5.2 rules ----

#[test]
fn add_single_valued_replaces_and_add_complex_merges() {
    let o = ok(patch_user(json!([{"op": "add", "path": "nickName", "value": "Babs"},
        {"op": "add", "path": "name", "value": {"middleName": "J"}}])));
    assert_eq!(o.resource["nickName"], "Babs");
    assert_eq!(o.resource["name"], json!({"givenName": "Test", "familyName": "User", "middleName": "J"}));
}

#[test]
fn add_to_multi_valued_appends_without_duplicates_and_moves_primary() {
    let o = ok(patch_user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "test.user@okta.local", "type": "work", "primary": true}]}])));
    assert!(!o.changed);
    let o = ok(patch_user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "new@x", "type": "home", "primary": true}]}])));
    assert_eq!(
        o.resource["emails"],
        json!([
        {"primary": false, "value": "test.user@okta.local", "type": "work"},
        {"value": "new@x", "type": "home", "primary": true}])
    );
    // Two primaries in one value contradict RFC 7643 §2.4.
    let e = err(patch_user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}])));
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn adding_what_is_there_changes_nothing() {
    let o = ok(patch_group(json!([{"op": "add", "path": "members", "value": [{"value": "u-keep"}]}])));
    assert!(!o.changed);
    assert!(o.members_added.is_empty());
}

#[test]
fn remove_rules() {
    let o =
        ok(patch_user(json!([{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "displayName"}])));
    assert_eq!(o.resource["name"], json!({"familyName": "User"}));
    assert!(o.resource.get("displayName").is_none());
    // A filter that matches nothing: success, no change (§3.5.2.2 example).
    let o = ok(patch_group(json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}])));
    assert!(!o.changed);
    // Removing every member unassigns the attribute.
    let o = ok(patch_group(json!([{"op": "remove", "path": "members"}])));
    assert!(o.resource.get("members").is_none());
    assert_eq!(o.members_removed.len(), 2);
    // Required attributes cannot be removed.
    assert_eq!(err(patch_user(json!([{"op": "remove", "path": "userName"}]))).scim_type, Some(ScimType::Mutability));
    assert_eq!(
        err(patch_group(json!([{"op": "replace", "path": "displayName", "value": null}]))).scim_type,
        Some(ScimType::Mutability)
    );
    assert_eq!(
        err(patch_user(json!([{"op": "replace", "path": "userName", "value": " "}]))).scim_type,
        Some(ScimType::InvalidValue)
    );
}

#[test]
fn replace_with_a_filter_replaces_matching_elements() {
    let o = ok(patch_user(json!([{"op": "replace", "path": "emails[type eq \"work\"]",
        "value": {"value": "w2@x", "type": "work", "primary": true}}])));
    assert_eq!(o.resource["emails"], json!([{"value": "w2@x", "type": "work", "primary": true}]));
}

#[test]
fn read_only_and_immutable_attributes() {
    for (path, value) in [("id", json!("x")), ("meta.version", json!("x")), ("groups", json!([{"value": "g"}]))] {
        let e = err(patch_user(json!([{"op": "replace", "path": path, "value": value}])));
        assert_eq!(e.scim_type, Some(ScimType::Mutability), "{path}");
    }
    let e =
        err(patch_group(json!([{"op": "replace", "path": "members[value eq \"u-keep\"].value", "value": "other"}])));
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    let e = err(patch_user(json!([{"op": "replace", "path": "manager.displayName", "value": "Boss"}])));
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
}

#[test]
fn unknown_paths_and_wrong_types() {
    for path in [
        "nosuch",
        "name.nosuch",
        "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:tag",
        "emails.value",
        "userName[value eq \"x\"]",
        "emails[type eq \"work\"].nosuch",
    ] {
        let e = err(patch_user(json!([{"op": "replace", "path": path, "value": "x"}])));
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{path}: {e}");
    }
    let e = err(patch_user(json!([{"op": "replace", "value": {"favoriteColor": "blue"}}])));
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    for (path, value) in [
        ("active", json!("maybe")),
        ("userName", json!(true)),
        ("emails", json!([{"value": {"x": 1}}])),
        ("name", json!(5)),
    ] {
        let e = err(patch_user(json!([{"op": "replace", "path": path, "value": value}])));
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{path}: {e}");
    }
    let e = err(patch_user(json!([{"op": "replace", "path": "emails[type gt true]", "value": {}}])));
    assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
}

#[test]
fn extension_paths_and_sub_attribute_removal() {
    let o =
        ok(patch_user(json!([{"op": "add", "path": ENTERPRISE, "value": {"department": "IT", "costCenter": "42"}}])));
    assert_eq!(o.resource[ENTERPRISE], json!({"department": "IT", "costCenter": "42"}));
    let p = ops(json!([{"op": "remove", "path": ENTERPRISE}]));
    let o2 = ok(apply(&o.resource, &p, &USER_RESOURCE));
    assert!(o2.resource.get(ENTERPRISE).is_none());
    assert_eq!(o2.resource["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    let o = ok(patch_user(json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}])));
    assert_eq!(o.resource["emails"], json!([{"value": "test.user@okta.local", "type": "work"}]));
    // Replacing a complex attribute keeps the sub-attributes the value does not mention (§3.5.2.3).
    let o = ok(patch_user(json!([{"op": "replace", "path": "name", "value": {"givenName": "X"}}])));
    assert_eq!(o.resource["name"], json!({"givenName": "X", "familyName": "User"}));
    // Replacing a whole member element is allowed; only its sub-attributes are immutable.
    let o = ok(patch_group(
        json!([{"op": "replace", "path": "members[value eq \"u-keep\"]", "value": {"value": "u-new"}}]),
    ));
    assert_eq!(o.members_added, ["u-new"]);
    assert_eq!(o.members_removed, ["u-keep"]);
}

#[test]
fn all_or_nothing() {
    let before = group();
    let p = ops(json!([
        {"op": "add", "path": "members", "value": [{"value": "new"}]},
        {"op": "replace", "path": "displayName", "value": "renamed"},
        {"op": "replace", "path": "nosuch", "value": 1}
    ]));
    let e = match apply(&before, &p, &GROUP_RESOURCE) {
        Ok(o) => panic!("{}", o.resource),
        Err(e) => e,
    };
    assert!(e.detail.starts_with("Operations[2]"), "{}", e.detail);
    assert_eq!(before, group());
}

#[test]
fn message_shape_errors() {
    let parse = |body: Value| PatchRequest::from_json(&body).map(|_| ()).map_err(|e| e.scim_type);
    let s = json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]);
    assert_eq!(parse(json!([])), Err(Some(ScimType::InvalidSyntax)));
    assert_eq!(parse(json!({"Operations": [{"op": "add", "value": {}}]})), Err(Some(ScimType::InvalidSyntax)));
    assert_eq!(parse(json!({"schemas": s, "Operations": []})), Err(Some(ScimType::InvalidSyntax)));
    assert_eq!(
        parse(json!({"schemas": s, "Operations": [{"op": "move", "path": "x"}]})),
        Err(Some(ScimType::InvalidSyntax))
    );
    assert_eq!(parse(json!({"schemas": s, "Operations": [{"op": "remove"}]})), Err(Some(ScimType::NoTarget)));
    assert_eq!(
        parse(json!({"schemas": s, "Operations": [{"op": "add", "path": "x"}]})),
        Err(Some(ScimType::InvalidValue))
    );
    assert_eq!(
        parse(json!({"schemas": s, "Operations": [{"op": "add", "path": "a[", "value": 1}]})),
        Err(Some(ScimType::InvalidPath))
    );
    assert_eq!(
        parse(json!({"schemas": s, "Operations": [{"op": "add", "path": 7, "value": 1}]})),
        Err(Some(ScimType::InvalidPath))
    );
    assert_eq!(parse(json!({"schemas": s, "operations": [{"OP": "ADD", "Path": "nickName", "Value": "x"}]})), Ok(()));
    let too_many: Vec<Value> = (0..=MAX_OPERATIONS).map(|_| json!({"op": "remove", "path": "nickName"})).collect();
    assert_eq!(parse(json!({"schemas": s, "Operations": too_many})), Err(Some(ScimType::InvalidValue)));
    let e = err(patch_user(json!([{"op": "add", "value": "not an object"}])));
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![Just("work"), Just("u-keep"), Just("True"), Just("x"), Just("")].prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("value"),
                        Just("type"),
                        Just("primary"),
                        Just("display"),
                        Just("givenName"),
                        Just("active")
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn arb_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("members".to_string()),
        Just("displayName".to_string()),
        Just("members[value eq \"u-keep\"]".to_string()),
        Just("members[value eq \"u-keep\"].display".to_string()),
        Just("emails[type eq \"work\"].value".to_string()),
        Just("name.givenName".to_string()),
        Just("active".to_string()),
        Just("id".to_string()),
        Just(format!("{ENTERPRISE}:manager.value")),
        Just(ENTERPRISE.to_string()),
        Just("emails".to_string()),
        "\\PC{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_never_panic(
        raw in proptest::collection::vec((prop_oneof![Just("add"), Just("Remove"), Just("REPLACE"), Just("nope")], proptest::option::of(arb_path()), proptest::option::of(arb_json())), 1..6),
        on_group in any::<bool>(),
    ) {
        let operations: Vec<Value> = raw.into_iter().map(|(op, path, value)| {
            let mut o = json!({"op": op});
            if let Some(p) = path { o["path"] = json!(p); }
            if let Some(v) = value { o["value"] = v; }
            o
        }).collect();
        let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations});
        let (resource, schema) = if on_group { (group(), &GROUP_RESOURCE) } else { (user(), &USER_RESOURCE) };
        match PatchRequest::from_json(&body) {
            Err(e) => prop_assert!(e.status == 400 && e.scim_type.is_some()),
            Ok(p) => match apply(&resource, &p, schema) {
                Ok(o) => prop_assert!(o.resource.is_object()),
                Err(e) => prop_assert!(e.status == 400 && e.scim_type.is_some(), "{e}"),
            },
        }
    }

    #[test]
    fn random_bodies_never_panic(body in arb_json()) {
        if let Err(e) = PatchRequest::from_json(&body) {
            prop_assert_eq!(e.status, 400);
        }
    }
}
