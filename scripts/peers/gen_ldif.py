#!/usr/bin/env python3
"""Generates a test directory as LDIF for OpenLDAP (dc=example,dc=org).

gen_ldif.py USERS GROUPS > data.ldif

Always present, whatever the sizes: a service account (cn=litellm-sync,ou=services) that tests bind as,
group "llm-admins" (alice), "engineering" (bob, and llm-admins nested), "all-staff" (carol, dave, engineering
nested), a disabled user "dave" (description=disabled), a user in no group ("erin"), and a user without mail
("frank"). Then USERS generated users user00001.. spread over GROUPS groups team-0001.. (plus "all-staff")."""
import sys
import uuid

BASE = "dc=example,dc=org"
users, groups = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout
w = out.write

def entry(dn, *lines):
    w(f"dn: {dn}\n" + "".join(l + "\n" for l in lines) + "\n")

entry(BASE, "objectClass: dcObject", "objectClass: organization", "o: Example", "dc: example")
for ou in ("people", "groups", "services"):
    entry(f"ou={ou},{BASE}", "objectClass: organizationalUnit", f"ou: {ou}")
entry(f"cn=litellm-sync,ou=services,{BASE}", "objectClass: organizationalRole", "objectClass: simpleSecurityObject",
      "cn: litellm-sync", "userPassword: sync-secret")

def person(uid, cn, mail=True, extra=()):
    lines = ["objectClass: inetOrgPerson", f"uid: {uid}", f"cn: {cn}", f"sn: {uid}",
             f"entryUUID: {uuid.uuid5(uuid.NAMESPACE_URL, 'user/' + uid)}"]
    if mail:
        lines.append(f"mail: {uid}@example.org")
    entry(f"uid={uid},ou=people,{BASE}", *lines, *extra)

person("alice", "Alice Liddell", extra=["departmentNumber: 750"])
person("bob", "Bob Builder")
person("carol", "Carol Danvers")
person("dave", "Dave Disabled", extra=["description: disabled"])
person("erin", "Erin Nogroup")
person("frank", "Frank Nomail", mail=False)
for i in range(1, users + 1):
    person(f"user{i:05d}", f"User {i}")

def group(cn, members):
    lines = ["objectClass: groupOfNames", f"cn: {cn}", f"entryUUID: {uuid.uuid5(uuid.NAMESPACE_URL, 'group/' + cn)}"]
    lines += [f"member: {m}" for m in members] or [f"member: cn=litellm-sync,ou=services,{BASE}"]
    entry(f"cn={cn},ou=groups,{BASE}", *lines)

u = lambda uid: f"uid={uid},ou=people,{BASE}"
g = lambda cn: f"cn={cn},ou=groups,{BASE}"
group("llm-admins", [u("alice")])
group("engineering", [u("bob"), g("llm-admins")])
group("all-staff", [u("carol"), u("dave"), u("frank"), g("engineering")] + [g(f"team-{j:04d}") for j in range(1, groups + 1)])
for j in range(1, groups + 1):
    group(f"team-{j:04d}", [u(f"user{i:05d}") for i in range(j, users + 1, groups)])
