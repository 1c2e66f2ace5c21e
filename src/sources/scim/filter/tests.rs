use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::sources::scim::error::ScimType;
use crate::sources::scim::schema::{GROUP_RESOURCE, USER_RESOURCE};

fn bjensen() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "BJensen-Ext",
        "userName": "bjensen@example.com",
        "name": {"familyName": "Jensen", "givenName": "Barbara"},
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "userType": "Employee",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        }
    })
}

fn user(f: &str) -> bool {
    match parse(f, &USER_RESOURCE) {
        Ok(filter) => filter.matches(&bjensen()),
        Err(e) => panic!("{f}: {e}"),
    }
}

fn user_err(f: &str) -> ScimError {
    match parse(f, &USER_RESOURCE) {
        Ok(filter) => panic!("{f} parsed: {filter:?}"),
        Err(e) => e,
    }
}

#[test]
fn rfc_7644_examples_parse_and_evaluate() {
    // RFC 7644 §3.4.2.2, the examples after Figure 1.
    assert!(user(r#"userName eq "bjensen@example.com""#));
    assert!(user(r#"name.familyName co "ens""#));
    assert!(user(r#"userName sw "bj""#));
    assert!(user(r#"title pr"#));
    assert!(!user(r#"nickName pr"#));
    assert!(!user(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#));
    assert!(user(r#"meta.lastModified ge "2011-05-13T04:42:34Z""#));
    assert!(user(r#"meta.lastModified lt "2011-05-13T04:42:35+00:00""#));
    assert!(user(r#"meta.lastModified le "2011-05-13T06:42:34+02:00""#));
    assert!(user(r#"title pr and userType eq "Employee""#));
    assert!(user(r#"title pr or userType eq "Intern""#));
    assert!(user(r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#));
    assert!(!user(r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#));
    assert!(user(r#"userType eq "Employee" and (emails.type eq "work")"#));
    assert!(user(r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#));
    assert!(user(
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#
    ));
}

#[test]
fn operators_and_attribute_names_are_case_insensitive() {
    // RFC 7644 §3.4.2.2: `userName Eq "john"` and `Username eq "john"` are the same filter.
    assert!(user(r#"USERNAME EQ "bjensen@example.com""#));
    assert!(user(r#"username Eq "BJENSEN@EXAMPLE.COM""#));
    assert!(user(r#"Emails[TYPE eq "WORK"]"#));
    assert!(user(r#"title PR AND NOT (nickName pr)"#));
}

#[test]
fn case_exact_attributes_compare_exactly() {
    // RFC 7643 §3.1: id and externalId are caseExact; userName and emails.value are not.
    assert!(user(r#"externalId eq "BJensen-Ext""#));
    assert!(!user(r#"externalId eq "bjensen-ext""#));
    assert!(!user(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
    assert!(user(r#"emails.value eq "BJENSEN@example.com""#));
}

#[test]
fn precedence_is_not_then_and_then_or() {
    // a or b and c == a or (b and c): true with a true, c false.
    assert!(user(r#"title pr or nickName pr and userType eq "Intern""#));
    // (a or b) and c: false.
    assert!(!user(r#"(title pr or nickName pr) and userType eq "Intern""#));
    assert!(!user(r#"not (title pr) or nickName pr"#));
    match parse(r#"a pr or b pr and c pr or d pr"#, &USER_RESOURCE) {
        Ok(Filter::Or(items)) => {
            assert_eq!(items.len(), 3);
            assert!(matches!(&items[1], Filter::And(v) if v.len() == 2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn urn_qualified_paths() {
    assert!(user(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#));
    assert!(user(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
    ));
    assert!(user(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bjensen""#));
    // Unqualified extension attribute (Entra: `manager eq "…"` in its reference-attribute check).
    assert!(user(r#"manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#));
}

#[test]
fn entra_value_path_followed_by_a_sub_attribute() {
    // Microsoft, "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft Entra ID":
    // "a GET to /Users with a filter must allow for both userName eq "user@contoso.com" and
    // emails[type eq "work"].value eq "user@contoso.com" queries."
    assert!(user(r#"emails[type eq "work"].value eq "bjensen@example.com""#));
    // The work email is not babs@jensen.org, although some email is: same element, not any element.
    assert!(!user(r#"emails[type eq "work"].value eq "babs@jensen.org""#));
    assert!(user(r#"emails[type eq "home"].value pr"#));
    let f =
        parse(r#"emails[type eq "work"].value eq "BJensen@example.com""#, &USER_RESOURCE).map_err(|e| e.to_string());
    let simple = f.as_ref().ok().and_then(Filter::as_simple_eq);
    assert_eq!(simple, Some(SimpleEq { path: "emails.value".into(), value: "BJensen@example.com", case_exact: false }));
}

#[test]
fn entra_unquoted_value_from_the_tutorial() {
    // Same tutorial, "Example 1. Query the service for a matching user": `filter=externalId eq jyoung`.
    let f = parse("externalId eq jyoung", &USER_RESOURCE).map_err(|e| e.to_string());
    assert_eq!(f.as_ref().ok().and_then(Filter::as_simple_eq).map(|s| s.value.to_string()), Some("jyoung".to_string()));
}

#[test]
fn multi_valued_and_complex_rules() {
    // Any value matching is enough; a complex multi-valued attribute without sub-attribute compares `value`.
    assert!(user(r#"emails co "jensen.org""#));
    assert!(user(r#"emails.type eq "home""#));
    // `ne` is the negation of `eq` over all values.
    assert!(!user(r#"emails.type ne "home""#));
    assert!(user(r#"emails.type ne "other""#));
    assert!(user(r#"emails pr"#));
    assert!(user(r#"name pr"#));
}

#[test]
fn booleans_numbers_and_null() {
    assert!(user("active eq true"));
    assert!(user("active eq TRUE"));
    assert!(!user("active eq false"));
    assert!(user("active ne false"));
    assert!(user(r#"active eq "True""#));
    assert!(user("nickName eq null"));
    assert!(!user("title eq null"));
    assert!(user("title ne null"));
    assert_eq!(user_err("active gt true").scim_type, Some(ScimType::InvalidFilter));
    assert_eq!(user_err("active co \"t\"").scim_type, Some(ScimType::InvalidFilter));
    assert_eq!(user_err("active eq 1").scim_type, Some(ScimType::InvalidFilter));
    assert_eq!(user_err("userName eq 42").scim_type, Some(ScimType::InvalidFilter));
    assert_eq!(user_err("meta.created co \"2010\"").scim_type, Some(ScimType::InvalidFilter));
    assert_eq!(user_err("meta.created gt \"yesterday\"").scim_type, Some(ScimType::InvalidFilter));
    assert_eq!(user_err("userName gt null").scim_type, Some(ScimType::InvalidFilter));
    assert_eq!(user_err("name eq \"x\"").scim_type, Some(ScimType::InvalidFilter));
}

#[test]
fn strings_order_lexicographically_after_case_folding() {
    assert!(user(r#"userName gt "A""#));
    assert!(user(r#"userName lt "C""#));
    assert!(user(r#"title ge "tour guide""#));
}

#[test]
fn unknown_attributes_have_no_value() {
    // RFC 7644 §3.4.2.1: "a presence or equality filter for an undefined attribute evaluates to false".
    assert!(!user(r#"favoriteColor eq "blue""#));
    assert!(!user("favoriteColor pr"));
    assert!(user(r#"favoriteColor ne "blue""#));
    assert!(!user(r#"urn:example:custom:2.0:User:tag eq "x""#));
    assert!(!user(r#"things[kind eq "x"]"#));
}

#[test]
fn malformed_filters_are_invalid_filter() {
    for f in [
        "",
        "   ",
        "userName",
        "userName eq",
        "userName zz \"x\"",
        "userName eq \"x\" and",
        "userName eq \"x\" xor title pr",
        "(userName eq \"x\"",
        "userName eq \"x\")",
        "userName eq \"unterminated",
        "userName eq \"bad \\q escape\"",
        "emails[type eq \"work\"",
        "emails[type eq \"work\"]]",
        "emails[type eq \"work\"].",
        "emails[type eq \"work\"].value",
        "emails[type[value eq \"x\"]]",
        "not title pr",
        "1abc eq \"x\"",
        "userName[value eq \"x\"]",
        "name.givenName[value eq \"x\"]",
        "] pr",
        ". pr",
    ] {
        let e = user_err(f);
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidFilter)), "{f}: {e}");
    }
}

#[test]
fn json_string_escapes() {
    let r = json!({"schemas": [], "userName": "a\"b\\c\u{e9}"});
    let f = parse(r#"userName eq "a\"b\\c\u00e9""#, &USER_RESOURCE).map_err(|e| e.to_string());
    assert_eq!(f.map(|f| f.matches(&r)), Ok(true));
}

#[test]
fn hostile_nesting_and_length_are_rejected_without_overflow() {
    let deep = format!("{}title pr{}", "(".repeat(100_000), ")".repeat(100_000));
    assert_eq!(user_err(&deep).scim_type, Some(ScimType::InvalidFilter));
    let nested = format!("{}title pr{}", "not (".repeat(65), ")".repeat(65));
    assert!(user_err(&nested).detail.contains("nested"));
    let ok = format!("{}title pr{}", "(".repeat(60), ")".repeat(60));
    assert!(user(&ok));
    let long = vec!["title pr"; 2_000].join(" or ");
    assert!(user_err(&long).detail.contains("longer"));
    let many = vec!["title pr"; 500].join(" and ");
    assert!(user(&many));
}

#[test]
fn simple_shapes_for_the_index() {
    let simple = |f: &str, schema| {
        parse(f, schema).ok().and_then(|f| f.as_simple_eq().map(|s| (s.path, s.value.to_string(), s.case_exact)))
    };
    assert_eq!(simple(r#"userName eq "x""#, &USER_RESOURCE), Some(("userName".into(), "x".into(), false)));
    assert_eq!(simple(r#"USERNAME EQ "x""#, &USER_RESOURCE), Some(("userName".into(), "x".into(), false)));
    assert_eq!(simple(r#"externalId eq "x""#, &USER_RESOURCE), Some(("externalId".into(), "x".into(), true)));
    assert_eq!(simple(r#"id eq "x""#, &USER_RESOURCE), Some(("id".into(), "x".into(), true)));
    assert_eq!(simple(r#"displayName eq "x""#, &GROUP_RESOURCE), Some(("displayName".into(), "x".into(), false)));
    assert_eq!(simple(r#"members[value eq "u1"]"#, &GROUP_RESOURCE), Some(("members.value".into(), "u1".into(), true)));
    // Entra's reference check on a group: the id wins over the member value.
    assert_eq!(
        simple(r#"id eq "g1" and members.value eq "u1""#, &GROUP_RESOURCE),
        Some(("id".into(), "g1".into(), true))
    );
    assert_eq!(simple(r#"userName eq "x" or userName eq "y""#, &USER_RESOURCE), None);
    assert_eq!(simple(r#"userName ne "x""#, &USER_RESOURCE), None);
    assert_eq!(simple(r#"active eq true"#, &USER_RESOURCE), None);
    assert_eq!(simple(r#"nosuch eq "x""#, &USER_RESOURCE), None);
}

#[test]
fn group_filters() {
    let g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "Admins",
        "members": [{"value": "u1", "display": "Alice"}, {"value": "u2"}]});
    let m = |f: &str| parse(f, &GROUP_RESOURCE).map(|f| f.matches(&g)).map_err(|e| e.to_string());
    assert_eq!(m(r#"displayName eq "admins""#), Ok(true));
    assert_eq!(m(r#"members[value eq "u2"]"#), Ok(true));
    assert_eq!(m(r#"members[value eq "U2"]"#), Ok(false));
    assert_eq!(m(r#"members eq "u1""#), Ok(true));
    assert_eq!(m(r#"userName eq "x""#), Ok(false));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        if let Err(e) = parse(&s, &USER_RESOURCE) {
            prop_assert_eq!(e.status, 400);
            prop_assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
        }
    }

    #[test]
    fn filter_shaped_text_never_panics(
        parts in proptest::collection::vec(prop_oneof![
            Just("userName".to_string()), Just("emails".to_string()), Just("name.givenName".to_string()),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value".to_string()),
            Just("eq".to_string()), Just("co".to_string()), Just("gt".to_string()), Just("pr".to_string()),
            Just("and".to_string()), Just("or".to_string()), Just("not".to_string()),
            Just("(".to_string()), Just(")".to_string()), Just("[".to_string()), Just("]".to_string()),
            Just(".".to_string()), Just("\"x\"".to_string()), Just("true".to_string()), Just("42".to_string()),
            Just("null".to_string()), Just("type".to_string()), Just("value".to_string()), Just("active".to_string()),
        ], 0..40)
    ) {
        let s = parts.join(" ");
        match parse(&s, &USER_RESOURCE) {
            Ok(f) => { let _ = f.matches(&bjensen()); let _ = f.as_simple_eq(); }
            Err(e) => prop_assert_eq!(e.scim_type, Some(ScimType::InvalidFilter)),
        }
    }
}
