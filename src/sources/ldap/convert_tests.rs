//! Unit tests of the pure LDAP entry conversion, on fixture entries.
use std::collections::BTreeMap;

use super::*;

use ldap3::asn1::{TagClass, PL};

fn octets(b: &[u8]) -> StructureTag {
    StructureTag { class: TagClass::Universal, id: 4, payload: PL::P(b.to_vec()) }
}

fn seq(id: u64, items: Vec<StructureTag>) -> StructureTag {
    StructureTag { class: TagClass::Universal, id, payload: PL::C(items) }
}

/// A search result entry as a server encodes it (RFC 4511 §4.5.2), before [`RawEntry::from_ber`].
fn ber(dn: &[u8], attrs: &[(&[u8], &[&[u8]])]) -> StructureTag {
    let list = attrs.iter().map(|(k, vs)| seq(16, vec![octets(k), seq(17, vs.iter().map(|v| octets(v)).collect())]));
    StructureTag { class: TagClass::Application, id: 4, payload: PL::C(vec![octets(dn), seq(16, list.collect())]) }
}

/// A fixture entry, read the way a real one is: through its BER form.
fn entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> RawEntry {
    let attrs: Vec<(&[u8], &[&[u8]])> = attrs.iter().map(|(k, vs)| (k.as_bytes(), *vs)).collect();
    RawEntry::from_ber(ber(dn.as_bytes(), &attrs)).expect("a well-formed fixture entry")
}

#[test]
fn entries_are_read_from_ber_with_values_as_sent() {
    let guid: &[u8] = &[0xff, 0x00, 0x80, 0x01];
    let e = RawEntry::from_ber(ber(
        b"uid=Ann,ou=People,dc=x",
        &[(b"UID", &[b"ann"]), (b"objectGUID", &[guid]), (b"cn", &[b"b", b"a"]), (b"CN", &[b"c"])],
    ))
    .expect("well formed");
    assert_eq!(e.dn, "uid=Ann,ou=People,dc=x", "the DN as sent (normalized later)");
    assert_eq!(e.values("uid"), [b"ann".to_vec()], "names lower-cased");
    assert_eq!(e.values("objectGUID"), [guid.to_vec()], "binary values byte for byte");
    assert_eq!(e.values("cn"), [b"b".to_vec(), b"a".to_vec(), b"c".to_vec()], "a name sent twice keeps every value");
    assert_eq!(e.attrs.len(), 3);
    let empty = RawEntry::from_ber(ber(b"", &[(b"member", &[])])).expect("an empty DN and an empty value set");
    assert!(empty.values("member").is_empty());
}

#[test]
fn malformed_ber_entries_are_none_not_a_panic() {
    let good = || ber(b"uid=a,dc=x", &[(b"uid", &[b"a"])]);
    let with = |f: &dyn Fn(&mut Vec<StructureTag>)| {
        let mut e = good();
        if let PL::C(parts) = &mut e.payload {
            f(parts);
        }
        e
    };
    let attr_of = |parts: &mut Vec<StructureTag>| -> Vec<StructureTag> {
        match &mut parts[1].payload {
            PL::C(list) => match &mut list[0].payload {
                PL::C(a) => std::mem::take(a),
                PL::P(_) => unreachable!(),
            },
            PL::P(_) => unreachable!(),
        }
    };
    let set_attr = |parts: &mut Vec<StructureTag>, a: Vec<StructureTag>| {
        if let PL::C(list) = &mut parts[1].payload {
            list[0].payload = PL::C(a);
        }
    };
    // The entry's one attribute (`SEQUENCE { type, vals }`), changed by `f`.
    let with_attr = |f: &dyn Fn(&mut Vec<StructureTag>)| {
        with(&|p| {
            let mut a = attr_of(p);
            f(&mut a);
            set_attr(p, a)
        })
    };
    let cases: Vec<(&str, StructureTag)> = vec![
        ("another operation", StructureTag { id: 5, ..good() }),
        ("a primitive entry", StructureTag { payload: PL::P(b"uid=a".to_vec()), ..good() }),
        ("no parts", with(&|p| p.clear())),
        ("no attribute list", with(&|p| p.truncate(1))),
        ("a constructed DN", with(&|p| p[0] = seq(16, vec![]))),
        ("a DN with bytes that are not UTF-8", with(&|p| p[0] = octets(b"uid=\xff\xfe"))),
        ("a primitive attribute list", with(&|p| p[1] = octets(b"uid"))),
        ("a primitive attribute", with(&|p| p[1] = seq(16, vec![octets(b"uid")]))),
        ("an attribute without a name", with(&|p| set_attr(p, vec![]))),
        ("an attribute without values", with_attr(&|a| a.truncate(1))),
        ("a constructed name", with_attr(&|a| a[0] = seq(16, vec![]))),
        ("a name that is not UTF-8", with_attr(&|a| a[0] = octets(&[0xc3]))),
        ("a primitive value set", with_attr(&|a| a[1] = octets(b"a"))),
        ("a constructed value", with_attr(&|a| a[1] = seq(17, vec![seq(16, vec![])]))),
    ];
    assert!(RawEntry::from_ber(with(&|_| ())).is_some(), "each case differs from a well-formed entry by its change");
    for (what, e) in cases {
        assert_eq!(RawEntry::from_ber(e), None, "{what}");
    }
}

fn openldap() -> AttrMap {
    AttrMap {
        id: "entryUUID".into(),
        user_name: "uid".into(),
        email: "mail".into(),
        display_name: "cn".into(),
        group_name: "cn".into(),
        members: members(&["member", "uniqueMember", "memberUid"]),
        member_of: None,
        user_account_control: false,
        overrides: [
            ("max_budget".to_string(), "llmBudget".to_string()),
            ("models".to_string(), "llmModel".to_string()),
        ]
        .into(),
    }
}

/// Member attributes with the default kinds (memberUid holds names).
fn members(names: &[&str]) -> Vec<MemberAttr> {
    names.iter().map(|n| MemberAttr::classify(n, &["memberUid".to_string()])).collect()
}

fn ad() -> AttrMap {
    AttrMap {
        id: "objectGUID".into(),
        user_name: "sAMAccountName".into(),
        email: "mail".into(),
        display_name: "displayName".into(),
        members: members(&["member"]),
        member_of: Some("memberOf".into()),
        user_account_control: true,
        overrides: BTreeMap::new(),
        ..openldap()
    }
}

#[test]
fn openldap_user() {
    let e = entry(
        "uid=alice,ou=People,dc=example,dc=org",
        &[
            ("entryUUID", &[b"5D1C2D3A-0000-4000-8000-00000000AB01"]),
            ("uid", &[b"alice"]),
            ("mail", &[b"alice@example.org", b"a@example.org"]),
            ("cn", &[b"Alice Liddell"]),
            ("llmBudget", &[b"42.5"]),
            ("llmModel", &[b"gpt-4o", b"claude"]),
        ],
    );
    let u = user_from_entry(&e, &openldap()).unwrap();
    assert_eq!(u.identity.external_id, "5d1c2d3a-0000-4000-8000-00000000ab01");
    assert_eq!(u.identity.email.as_deref(), Some("alice@example.org"), "first of a multi-valued mail");
    assert_eq!(u.identity.display_name.as_deref(), Some("Alice Liddell"));
    assert!(u.identity.active);
    assert_eq!(u.identity.overrides.max_budget, Some(42.5));
    assert_eq!(u.identity.overrides.models, Some(vec!["gpt-4o".into(), "claude".into()]));
    assert_eq!(u.dn_norm, "uid=alice,ou=people,dc=example,dc=org");
}

#[test]
fn ad_user_guid_and_disabled_flag() {
    // objectGUID bytes as AD stores them, and the textual form AD tools print.
    let guid: [u8; 16] =
        [0x3a, 0x2d, 0x1c, 0x5d, 0x02, 0x01, 0x04, 0x03, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xab, 0x01];
    let e = entry(
        "CN=Bob Builder,CN=Users,DC=example,DC=org",
        &[
            ("objectGUID", &[&guid]),
            ("sAMAccountName", &[b"bob"]),
            ("displayName", &[b"Bob Builder"]),
            ("userAccountControl", &[b"514"]),
            ("memberOf", &[b"CN=LLM Users,OU=Groups,DC=example,DC=org"]),
        ],
    );
    let u = user_from_entry(&e, &ad()).unwrap();
    assert_eq!(u.identity.external_id, "5d1c2d3a-0102-0304-8000-00000000ab01");
    assert!(!u.identity.active, "514 = NORMAL_ACCOUNT | ACCOUNTDISABLE");
    assert_eq!(u.identity.email, None, "missing mail is fine");
    assert_eq!(u.member_of, vec!["cn=llm users,ou=groups,dc=example,dc=org"]);
    let mut enabled = e.clone();
    enabled.attrs.insert("useraccountcontrol".into(), vec![b"512".to_vec()]);
    assert!(user_from_entry(&enabled, &ad()).unwrap().identity.active);
}

/// The id an entry must be reported with, and a word of the reason.
fn doubt(e: &RawEntry, m: &AttrMap, id: Option<&str>, why: &str) {
    let u = user_from_entry(e, m).expect_err("the entry must be unreadable");
    assert_eq!((u.external_id.as_deref(), u.kind, u.entry.as_str()), (id, EntryKind::User, e.dn.as_str()), "{u:?}");
    assert!(u.reason.contains(why), "{why:?} in {u:?}");
}

#[test]
fn a_user_without_a_usable_name_is_doubt_with_its_id() {
    let m = openldap();
    let id = Some("u-1");
    doubt(&entry("cn=x,dc=x", &[("entryUUID", &[b"U-1"])]), &m, id, "no uid value");
    doubt(&entry("cn=x,dc=x", &[("entryUUID", &[b"U-1"]), ("uid", &[b"   "])]), &m, id, "no uid value");
    doubt(&entry("cn=x,dc=x", &[("entryUUID", &[b"U-1"]), ("uid", &[b"\xff\xfe"])]), &m, id, "not valid UTF-8");
    doubt(&entry("cn=x,dc=x", &[("entryUUID", &[b"U-1"]), ("uid", &[b"a\0b"])]), &m, id, "control character");
}

#[test]
fn an_ad_user_without_a_usable_user_account_control_is_doubt_with_its_id() {
    let guid = [7u8; 16];
    let id = canonical_id("objectGUID", &guid).unwrap();
    let base = |uac: Option<&[u8]>| {
        let mut e = entry("CN=X,DC=x", &[("objectGUID", &[&guid]), ("sAMAccountName", &[b"x"])]);
        if let Some(v) = uac {
            e.attrs.insert("useraccountcontrol".into(), vec![v.to_vec()]);
        }
        e
    };
    let id = Some(id.as_str());
    doubt(&base(Some(b"lots")), &ad(), id, "is not a number");
    doubt(&base(Some(b"51\xff")), &ad(), id, "not valid UTF-8");
    doubt(&base(None), &ad(), id, "no userAccountControl");
    doubt(&base(Some(&[b'9'; 500])), &ad(), id, "…");
    assert!(user_from_entry(&base(Some(b" 66048 ")), &ad()).unwrap().identity.active, "NORMAL | DONT_EXPIRE");
}

#[test]
fn an_entry_without_a_usable_id_is_doubt_without_one() {
    let m = openldap();
    doubt(&entry("uid=x", &[("uid", &[b"x"])]), &m, None, "no entryUUID value");
    doubt(&entry("uid=x", &[("entryUUID", &[b"  "]), ("uid", &[b"x"])]), &m, None, "entryUUID is empty");
    doubt(&entry("uid=x", &[("entryUUID", &[b"\xff"]), ("uid", &[b"x"])]), &m, None, "not valid UTF-8");
    doubt(&entry("cn=x", &[("objectGUID", &[b"short"]), ("sAMAccountName", &[b"x"])]), &ad(), None, "16");
    let g = group_from_entry(&entry("cn=g", &[("cn", &[b"g"]), ("member", &[b"uid=x"])]), &m).unwrap_err();
    assert_eq!((g.external_id, g.kind, g.entry.as_str()), (None, EntryKind::Group, "cn=g"));
}

#[test]
fn a_group_whose_members_cannot_be_read_is_doubt_not_an_empty_group() {
    let m = openldap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("member", b"uid=a,dc=\xff", "member value is not valid UTF-8"),
        ("uniqueMember", b"\xc3(", "uniqueMember value is not valid UTF-8"),
        ("memberUid", b"bo\xffb", "memberUid value is not valid UTF-8"),
        ("member;range=0-1499", b"uid=a,dc=x", "member;range=0-1499"),
    ];
    for (attr, value, why) in cases {
        let e = entry("cn=g,dc=x", &[("entryUUID", &[b"G-1"]), ("cn", &[b"g"]), (attr, &[b"uid=ok,dc=x", value])]);
        let u = group_from_entry(&e, &m).expect_err(why);
        assert_eq!((u.external_id.as_deref(), u.kind, u.entry.as_str()), (Some("g-1"), EntryKind::Group, "cn=g,dc=x"));
        assert!(u.reason.contains(why), "{why:?} in {u:?}");
    }
    let e = entry("cn=g,dc=x", &[("entryUUID", &[b"G-1"]), ("cn", &[b"\xff"])]);
    assert!(group_from_entry(&e, &m).unwrap_err().reason.contains("cn is not valid UTF-8"));
    // An attribute this map does not read may be anything.
    let e = entry("cn=g,dc=x", &[("entryUUID", &[b"G-1"]), ("description", &[b"\xff"]), ("owner;range=0-1", &[])]);
    assert!(group_from_entry(&e, &m).is_ok());
}

#[test]
fn non_utf8_display_names_are_kept_lossily_and_bad_overrides_reported() {
    let e = entry(
        "uid=c,dc=x",
        &[
            ("entryUUID", &[b"1"]),
            ("uid", &[b"c"]),
            ("cn", &[b"Caf\xe9"]),
            ("llmBudget", &[b"-3"]),
            ("mail", &[b"not-an-address"]),
        ],
    );
    let u = user_from_entry(&e, &openldap()).unwrap();
    assert_eq!(u.identity.display_name.as_deref(), Some("Caf\u{fffd}"));
    assert_eq!(u.identity.overrides.max_budget, None);
    assert_eq!(u.identity.email, None);
    assert!(u.warnings[0].contains("override max_budget"), "{:?}", u.warnings);
}

fn user(dn: &str, id: &[u8], uid: &[u8]) -> UserRecord {
    user_from_entry(&entry(dn, &[("entryUUID", &[id]), ("uid", &[uid])]), &openldap()).unwrap()
}

fn group(dn: &str, id: &[u8], attrs: &[(&str, &[&[u8]])]) -> GroupRecord {
    let ids = [id];
    let mut all: Vec<(&str, &[&[u8]])> = vec![("entryUUID", &ids[..])];
    all.extend_from_slice(attrs);
    group_from_entry(&entry(dn, &all), &openldap()).unwrap()
}

#[test]
fn membership_by_dn_nested_and_member_uid() {
    let mut users =
        vec![user("uid=alice,ou=people,dc=x", b"u1", b"alice"), user("uid=bob,ou=people,dc=x", b"u2", b"bob")];
    let eng = group(
        "cn=eng,ou=groups,dc=x",
        b"g1",
        &[("cn", &[b"eng"]), ("member", &[b"UID=Alice, OU=People,DC=x", b"cn=ghost,dc=x"])],
    );
    let all = group(
        "cn=all,ou=groups,dc=x",
        b"g2",
        &[("cn", &[b"all"]), ("member", &[b"cn=eng,ou=groups,dc=x", b"uid=bob,ou=people,dc=x"])],
    );
    let (groups, unknown) = resolve(&mut users, &[eng, all], &[]);
    assert_eq!(groups[0].members, vec!["u1"]);
    assert_eq!(groups[1].members, vec!["u2"]);
    assert_eq!(groups[1].member_groups, vec!["g1"]);
    assert_eq!(unknown, 1);

    let g = group("cn=p,dc=x", b"g3", &[("memberUid", &[b"bob", b"nobody"])]);
    assert_eq!(g.name, "cn=p,dc=x", "no cn: the DN names the group");
    let (groups, unknown) = resolve(&mut users, &[g], &[]);
    assert_eq!(groups[0].members, vec!["u2"]);
    assert_eq!(unknown, 1);
}

#[test]
fn member_uid_matches_user_names_whatever_the_case() {
    let mut users = vec![
        user("cn=Smith\\, John,ou=people,dc=x", b"u1", b"JSmith"),
        user("uid=alice,ou=people,dc=x", b"u2", b"alice"),
        user("uid=j\u{fc}rgen,ou=people,dc=x", b"u3", "J\u{dc}rgen".as_bytes()),
    ];
    let g = group(
        "cn=unix,dc=x",
        b"g1",
        &[("cn", &[b"unix"]), ("memberUid", &[b"jsmith", b" ALICE ", "j\u{fc}RGEN".as_bytes(), b"carol"])],
    );
    assert_eq!(g.member_names, vec!["jsmith", "alice", "j\u{fc}rgen", "carol"]);
    let (groups, unknown) = resolve(&mut users, &[g], &[]);
    assert_eq!(groups[0].members, vec!["u1", "u2", "u3"]);
    assert_eq!(unknown, 1, "carol is nobody here");
    assert_eq!(users[0].identity.user_name, "JSmith", "the name itself is kept as the directory spells it");
}

#[test]
fn one_group_may_list_members_in_every_attribute_kind() {
    let mut users = vec![
        user("uid=alice,ou=people,dc=x", b"u1", b"alice"),
        user("cn=Smith\\, John,ou=people,dc=x", b"u2", b"jsmith"),
        user("uid=carol,ou=people,dc=x", b"u3", b"carol"),
    ];
    let sre = group(
        "cn=sre,ou=groups,dc=x",
        b"g2",
        &[("uniqueMember", &[b"uid=carol,ou=people,dc=x#'0'B", b"cn=Smith\\2C John,ou=people,dc=x#'0101'B"])],
    );
    assert_eq!(sre.member_dns, vec!["uid=carol,ou=people,dc=x", "cn=smith\\, john,ou=people,dc=x"]);
    let mixed = group(
        "cn=mixed,ou=groups,dc=x",
        b"g1",
        &[
            ("member", &[b"uid=alice,ou=people,dc=x", b"cn=sre,ou=groups,dc=x"]),
            ("uniqueMember", &[b"cn=smith\\, john,ou=people,dc=x"]),
            ("memberUid", &[b"Carol"]),
        ],
    );
    let (groups, unknown) = resolve(&mut users, &[mixed, sre], &[]);
    assert_eq!(
        (groups[0].members.clone(), groups[0].member_groups.clone()),
        (vec!["u1".into(), "u2".into(), "u3".into()], vec!["g2".to_string()])
    );
    assert_eq!(groups[1].members, vec!["u2", "u3"]);
    assert_eq!(unknown, 0);
}

#[test]
fn only_unique_member_has_an_optional_uid() {
    for (v, dn) in [
        ("uid=a,dc=x#'0'B", "uid=a,dc=x"),
        ("uid=a,dc=x#'0101'B", "uid=a,dc=x"),
        ("uid=a,dc=x #''B", "uid=a,dc=x"),
        ("uid=a,dc=x", "uid=a,dc=x"),
        ("cn=a#b,dc=x", "cn=a#b,dc=x"),
        ("uid=a,dc=x#'0102'B", "uid=a,dc=x#'0102'B"),
        ("uid=a,dc=x#'01'b", "uid=a,dc=x#'01'b"),
        ("cn=a\\#'0'B", "cn=a\\#'0'B"),
        ("cn=a\\\\#'0'B", "cn=a\\\\"),
        ("#'1'B", ""),
        ("'B", "'B"),
        ("\u{fc}#'1'B", "\u{fc}"),
    ] {
        assert_eq!(strip_optional_uid(v), dn, "{v:?}");
    }
    let m = AttrMap { members: members(&["member"]), ..openldap() };
    let g = group_from_entry(&entry("cn=g", &[("entryUUID", &[b"g"]), ("member", &[b"cn=a,dc=x#'0'B"])]), &m).unwrap();
    assert_eq!(g.member_dns, vec![normalize_dn("cn=a,dc=x#'0'B")], "a member DN is taken whole");
}

#[test]
fn a_group_nesting_an_unreadable_group_lists_it_and_does_not_count_it_foreign() {
    let m = openldap();
    let mut users = vec![user("uid=alice,ou=people,dc=x", b"u1", b"alice")];
    let broken = entry("CN=Broken,OU=Groups,DC=x", &[("entryUUID", &[b"G-BAD"]), ("member", &[b"\xff"])]);
    let doubt = vec![group_from_entry(&broken, &m).unwrap_err()];
    let top = group(
        "cn=top,ou=groups,dc=x",
        b"g1",
        &[("member", &[b"uid=alice,ou=people,dc=x", b"cn=broken,ou=groups,dc=x"])],
    );
    let (groups, unknown) = resolve(&mut users, &[top], &doubt);
    assert_eq!(groups.len(), 1, "the unreadable group is not a group of the snapshot");
    assert_eq!(groups[0].member_groups, vec!["g-bad"]);
    assert_eq!(unknown, 0);
}

/// Hostile input: NULs, invalid UTF-8, stray escapes, many attributes and values. Nothing may panic.
#[test]
fn hostile_entries_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] = b"\\,;=+<>#\"' \0aZ09\xc3\xbc\xff#'B";
    let mut junk =
        |len: usize| -> Vec<u8> { (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect() };
    let maps = [openldap(), ad()];
    for round in 0..2_000 {
        let raw_dn = junk(round % 40);
        let mut values: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        for name in [
            "entryuuid",
            "objectguid",
            "uid",
            "samaccountname",
            "mail",
            "cn",
            "displayname",
            "member",
            "uniquemember",
            "memberuid",
            "memberof",
            "useraccountcontrol",
            "llmbudget",
            "member;range=0-*",
        ] {
            if round % 3 == 0 || name.len() % 2 == round % 2 {
                let n = round % 5;
                values.push((name, (0..n).map(|i| junk(i * 7 % 33)).collect()));
            }
        }
        let refs: Vec<Vec<&[u8]>> = values.iter().map(|(_, vs)| vs.iter().map(Vec::as_slice).collect()).collect();
        let attrs: Vec<(&[u8], &[&[u8]])> =
            values.iter().zip(&refs).map(|((k, _), vs)| (k.as_bytes(), vs.as_slice())).collect();
        let Some(e) = RawEntry::from_ber(ber(&raw_dn, &attrs)) else {
            assert!(std::str::from_utf8(&raw_dn).is_err(), "only a DN that is not UTF-8 makes this entry malformed");
            continue;
        };
        let dn = e.dn.clone();
        let _ = normalize_dn(&dn);
        let _ = strip_optional_uid(&dn);
        for m in &maps {
            let _ = user_from_entry(&e, m);
            let _ = group_from_entry(&e, m);
        }
    }
    // Many attributes, many values.
    let mut e = entry("cn=big,dc=x", &[("entryUUID", &[b"g"])]);
    for i in 0..5_000 {
        e.attrs.insert(format!("x-attr-{i}"), vec![vec![0u8; 3]]);
    }
    e.attrs.insert("member".into(), (0..50_000).map(|i| format!("uid=u{i},dc=x").into_bytes()).collect());
    assert_eq!(group_from_entry(&e, &openldap()).unwrap().member_dns.len(), 50_000);
}

#[test]
fn member_of_resolves_to_group_ids() {
    let m = ad();
    let guid = |n: u8| -> Vec<u8> {
        let mut g = vec![0u8; 16];
        g[15] = n;
        g
    };
    let (g1, u1) = (guid(1), guid(2));
    let mut users = vec![user_from_entry(
        &entry(
            "CN=A,CN=Users,DC=x",
            &[
                ("objectGUID", &[&u1]),
                ("sAMAccountName", &[b"a"]),
                ("userAccountControl", &[b"512"]),
                ("memberOf", &[b"CN=G,CN=Users,DC=x", b"CN=Elsewhere,DC=y"]),
            ],
        ),
        &m,
    )
    .unwrap()];
    let g = group_from_entry(&entry("CN=G,CN=Users,DC=x", &[("objectGUID", &[&g1]), ("cn", &[b"G"])]), &m).unwrap();
    let gid = g.external_id.clone();
    resolve(&mut users, &[g], &[]);
    assert_eq!(users[0].identity.groups, vec![gid]);
}

#[test]
fn attribute_lists() {
    let a = ad().user_attrs();
    for want in ["objectGUID", "sAMAccountName", "memberOf", "userAccountControl", "mail", "displayName"] {
        assert!(a.iter().any(|x| x == want), "{want} in {a:?}");
    }
    assert_eq!(openldap().group_attrs(), vec!["cn", "entryUUID", "member", "memberUid", "uniqueMember"]);
    assert_eq!(ad().group_attrs(), vec!["cn", "member", "objectGUID"]);
}
