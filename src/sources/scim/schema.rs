//! The resource schemas we serve (RFC 7643 §4 and §8.7.1), as static data, and the resolution of attribute paths
//! against them.
//!
//! Only what litellm-sync stores is declared: the core User attributes an IdP sends for a person (no photos,
//! ims, roles, entitlements or x509Certificates: those are ignored on input), the Enterprise User extension, and
//! the core Group. Attribute names are matched case-insensitively everywhere (RFC 7643 §2.1) and always come
//! back in their canonical spelling, which is how resources are stored.
//!
//! Deliberate deviations from the RFC's example schema (RFC 7643 §8.7.1 says "individual values and schema MAY
//! change"): `members.value` is caseExact, because it holds a resource `id`, which is caseExact (§3.1); and
//! `members.display` is declared, because Okta sends it.

/// RFC 7643 §2.3 data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// RFC 7643 §2.2 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// RFC 7643 §2.2 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// RFC 7643 §2.2 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, PartialEq)]
pub struct Attribute {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [Attribute],
    pub description: &'static str,
}

impl Attribute {
    /// A sub-attribute by name, case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&'static Attribute> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }
}

/// A readWrite, optional, non-unique, case-insensitive, single-valued string: the common case.
const fn string(name: &'static str, description: &'static str) -> Attribute {
    Attribute {
        name,
        ty: AttrType::String,
        multi_valued: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
        description,
    }
}

const fn of_type(mut a: Attribute, ty: AttrType) -> Attribute {
    a.ty = ty;
    a
}

const fn complex(name: &'static str, subs: &'static [Attribute], description: &'static str) -> Attribute {
    let mut a = string(name, description);
    a.ty = AttrType::Complex;
    a.sub_attributes = subs;
    a
}

const fn multi(mut a: Attribute) -> Attribute {
    a.multi_valued = true;
    a
}

const fn read_only(mut a: Attribute) -> Attribute {
    a.mutability = Mutability::ReadOnly;
    a
}

const fn immutable(mut a: Attribute) -> Attribute {
    a.mutability = Mutability::Immutable;
    a
}

const fn case_exact(mut a: Attribute) -> Attribute {
    a.case_exact = true;
    a
}

const fn reference(name: &'static str, types: &'static [&'static str], description: &'static str) -> Attribute {
    let mut a = string(name, description);
    a.ty = AttrType::Reference;
    a.reference_types = types;
    a
}

const fn canonical(mut a: Attribute, values: &'static [&'static str]) -> Attribute {
    a.canonical_values = values;
    a
}

/// The value/display/type/primary shape shared by emails and phoneNumbers (RFC 7643 §2.4).
macro_rules! typed_values {
    ($types:expr) => {
        &[
            string("value", "The value, e.g. an email address or a telephone number."),
            string("display", "A human-readable name, primarily used for display purposes."),
            canonical(string("type", "A label indicating the value's function, e.g. 'work' or 'home'."), $types),
            of_type(
                string("primary", "Whether this is the primary value; true appears at most once."),
                AttrType::Boolean,
            ),
        ]
    };
}

/// One schema (RFC 7643 §7): an id (its URN), a name and its attributes.
#[derive(Debug, PartialEq)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attribute],
}

impl Schema {
    pub fn attribute(&self, name: &str) -> Option<&'static Attribute> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// `id`, `externalId` and `meta` (RFC 7643 §3.1): part of every resource, listed in no schema.
pub static COMMON_ATTRIBUTES: &[Attribute] = &[
    {
        let mut a = read_only(case_exact(string("id", "Unique identifier of the resource, assigned by us.")));
        a.returned = Returned::Always;
        a.uniqueness = Uniqueness::Server;
        a
    },
    case_exact(string("externalId", "Identifier of the resource as defined by the provisioning client.")),
    {
        // RFC 7643 §3.1 leaves meta's `returned` open; we always return it, so clients see `version`.
        let mut a = read_only(complex(
            "meta",
            &[
                read_only(case_exact(string("resourceType", "The name of the resource type."))),
                read_only(of_type(string("created", "When the resource was added."), AttrType::DateTime)),
                read_only(of_type(string("lastModified", "When the resource was last changed."), AttrType::DateTime)),
                read_only(case_exact(reference("location", &["uri"], "The URI of the resource."))),
                read_only(case_exact(string("version", "The version (ETag) of the resource."))),
            ],
            "Resource metadata, maintained by the service provider.",
        ));
        a.returned = Returned::Always;
        a
    },
];

static USER_ATTRIBUTES: &[Attribute] = &[
    {
        let mut a = string("userName", "Unique identifier for the User, used to authenticate. REQUIRED.");
        a.required = true;
        a.uniqueness = Uniqueness::Server;
        a
    },
    complex(
        "name",
        &[
            string("formatted", "The full name, formatted for display."),
            string("familyName", "The family name, or last name."),
            string("givenName", "The given name, or first name."),
            string("middleName", "The middle name(s)."),
            string("honorificPrefix", "The honorific prefix(es), or title, e.g. 'Ms.'."),
            string("honorificSuffix", "The honorific suffix(es), e.g. 'III'."),
        ],
        "The components of the user's real name.",
    ),
    string("displayName", "The name of the User, suitable for display to end-users."),
    string("nickName", "The casual way to address the user."),
    string("title", "The user's title, such as 'Vice President'."),
    string("userType", "The relationship between the organization and the user, e.g. 'Employee'."),
    string("preferredLanguage", "The user's preferred written or spoken language, e.g. 'en-US'."),
    string("locale", "The user's default location for localizing, e.g. 'en-US'."),
    string("timezone", "The user's time zone in IANA format, e.g. 'America/Los_Angeles'."),
    of_type(string("active", "The user's administrative status."), AttrType::Boolean),
    {
        let mut a = string("password", "The user's cleartext password. Accepted and never stored or returned.");
        a.mutability = Mutability::WriteOnly;
        a.returned = Returned::Never;
        a
    },
    multi(complex("emails", typed_values!(&["work", "home", "other"]), "Email addresses for the user.")),
    multi(complex(
        "phoneNumbers",
        typed_values!(&["work", "home", "mobile", "fax", "pager", "other"]),
        "Phone numbers for the user.",
    )),
    multi(complex(
        "addresses",
        &[
            string("formatted", "The full mailing address, formatted for display."),
            string("streetAddress", "The full street address component."),
            string("locality", "The city or locality component."),
            string("region", "The state or region component."),
            string("postalCode", "The zip code or postal code component."),
            string("country", "The country name component, ISO 3166-1 alpha-2."),
            canonical(string("type", "A label indicating the address' function."), &["work", "home", "other"]),
            of_type(string("primary", "Whether this is the primary address."), AttrType::Boolean),
        ],
        "A physical mailing address for this user.",
    )),
    read_only(multi(complex(
        "groups",
        &[
            read_only(string("value", "The identifier of the user's group.")),
            read_only(reference("$ref", &["User", "Group"], "The URI of the corresponding Group resource.")),
            read_only(string("display", "A human-readable name of the group.")),
            read_only(canonical(string("type", "How the membership was derived."), &["direct", "indirect"])),
        ],
        "The groups the user belongs to, direct or indirect. Maintained through the Group resource.",
    ))),
];

static ENTERPRISE_ATTRIBUTES: &[Attribute] = &[
    string("employeeNumber", "Identifier assigned to a person, typically based on order of hire."),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    complex(
        "manager",
        &[
            string("value", "The id of the SCIM resource representing the user's manager."),
            reference("$ref", &["User"], "The URI of the SCIM resource representing the user's manager."),
            read_only(string("displayName", "The displayName of the user's manager.")),
        ],
        "The user's manager.",
    ),
];

static GROUP_ATTRIBUTES: &[Attribute] = &[
    {
        let mut a = string("displayName", "A human-readable name for the Group. REQUIRED.");
        a.required = true;
        a
    },
    multi(complex(
        "members",
        &[
            immutable(case_exact(string("value", "Identifier of the member of this Group."))),
            immutable(reference("$ref", &["User", "Group"], "The URI of the member resource.")),
            immutable(string("display", "A human-readable name of the member.")),
            immutable(canonical(string("type", "The type of the member."), &["User", "Group"])),
        ],
        "A list of members of the Group.",
    )),
];

pub static USER: Schema =
    Schema { id: USER_SCHEMA, name: "User", description: "User Account", attributes: USER_ATTRIBUTES };
pub static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRIBUTES,
};
pub static GROUP: Schema =
    Schema { id: GROUP_SCHEMA, name: "Group", description: "Group", attributes: GROUP_ATTRIBUTES };

/// A resource type (RFC 7643 §6): its core schema and its extensions.
#[derive(Debug, PartialEq)]
pub struct ResourceSchema {
    /// "User" or "Group".
    pub name: &'static str,
    /// "/Users" or "/Groups".
    pub endpoint: &'static str,
    pub description: &'static str,
    pub core: &'static Schema,
    /// Extensions; none of ours is required.
    pub extensions: &'static [&'static Schema],
}

pub static USER_RESOURCE: ResourceSchema = ResourceSchema {
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    core: &USER,
    extensions: &[&ENTERPRISE_USER],
};
pub static GROUP_RESOURCE: ResourceSchema =
    ResourceSchema { name: "Group", endpoint: "/Groups", description: "Group", core: &GROUP, extensions: &[] };

/// Every resource type we serve, in the order `/ResourceTypes` lists them.
pub static RESOURCE_TYPES: &[&ResourceSchema] = &[&USER_RESOURCE, &GROUP_RESOURCE];
/// Every schema we serve, in the order `/Schemas` lists them.
pub static SCHEMAS: &[&Schema] = &[&USER, &ENTERPRISE_USER, &GROUP];

/// Where an attribute lives in a resource: at the top level (common and core attributes) or inside the
/// extension's object (`"urn:…:enterprise:2.0:User": {…}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Container {
    TopLevel,
    Extension(&'static Schema),
}

/// A resolved attribute path: `attr` or `attr.sub`, with the container it lives in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttrRef {
    pub container: Container,
    pub attr: &'static Attribute,
    pub sub: Option<&'static Attribute>,
}

impl AttrRef {
    /// The canonical path: `userName`, `name.givenName`, `urn:…:enterprise:2.0:User:manager.value`.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        if let Container::Extension(ext) = self.container {
            s.push_str(ext.id);
            s.push(':');
        }
        s.push_str(self.attr.name);
        if let Some(sub) = self.sub {
            s.push('.');
            s.push_str(sub.name);
        }
        s
    }

    /// The definition of what the path points at: the sub-attribute if there is one.
    pub fn leaf(&self) -> &'static Attribute {
        self.sub.unwrap_or(self.attr)
    }
}

impl ResourceSchema {
    /// Every schema URN a resource of this type may list in `schemas`.
    pub fn schema_ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.core.id).chain(self.extensions.iter().map(|e| e.id))
    }

    /// The extension whose URN is `urn`, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&'static Schema> {
        self.extensions.iter().copied().find(|e| e.id.eq_ignore_ascii_case(urn))
    }

    /// A top-level or extension attribute by plain name. Core and common names win; an extension attribute is
    /// found without its URN too, because Entra sends `manager` unqualified (RFC 7644 §3.10 only says clients
    /// SHOULD qualify extension attributes).
    pub fn attribute(&self, name: &str) -> Option<(Container, &'static Attribute)> {
        if let Some(a) = COMMON_ATTRIBUTES.iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
            return Some((Container::TopLevel, a));
        }
        if let Some(a) = self.core.attribute(name) {
            return Some((Container::TopLevel, a));
        }
        self.extensions.iter().find_map(|e| e.attribute(name).map(|a| (Container::Extension(e), a)))
    }

    /// Splits an optional schema URN prefix off `path`: `urn:…:enterprise:2.0:User:manager.value` gives the
    /// extension container and `manager.value`. `None` for a URN prefix that names no schema of ours.
    fn split_urn<'p>(&self, path: &'p str) -> Option<(Option<Container>, &'p str)> {
        if !path.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
            return Some((None, path));
        }
        for id in self.schema_ids() {
            if path.len() > id.len()
                && path.is_char_boundary(id.len())
                && path[..id.len()].eq_ignore_ascii_case(id)
                && path.as_bytes()[id.len()] == b':'
            {
                let container = match self.extension(id) {
                    Some(ext) => Container::Extension(ext),
                    None => Container::TopLevel,
                };
                return Some((Some(container), &path[id.len() + 1..]));
            }
        }
        None
    }

    /// Resolves `attr`, `attr.sub`, or either with a schema URN prefix, case-insensitively. `None` when any
    /// part names nothing we know, or when a sub-attribute is asked of a simple attribute.
    pub fn resolve(&self, path: &str) -> Option<AttrRef> {
        let (container, rest) = self.split_urn(path)?;
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        let (container, attr) = match container {
            None => self.attribute(name)?,
            Some(Container::Extension(ext)) => (Container::Extension(ext), ext.attribute(name)?),
            Some(Container::TopLevel) => {
                let a = COMMON_ATTRIBUTES
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name))
                    .or_else(|| self.core.attribute(name))?;
                (Container::TopLevel, a)
            }
        };
        let sub = match sub {
            None => None,
            Some(s) => Some(attr.sub(s)?),
        };
        Some(AttrRef { container, attr, sub })
    }
}

/// The resource type whose core schema is `urn`, case-insensitively.
pub fn resource_type_for_schema(urn: &str) -> Option<&'static ResourceSchema> {
    RESOURCE_TYPES.iter().copied().find(|r| r.core.id.eq_ignore_ascii_case(urn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_case_insensitively_to_canonical_names() {
        let r = USER_RESOURCE.resolve("USERNAME").expect("userName");
        assert_eq!(r.canonical(), "userName");
        assert_eq!(USER_RESOURCE.resolve("name.GIVENNAME").map(|r| r.canonical()).as_deref(), Some("name.givenName"));
        assert_eq!(USER_RESOURCE.resolve("emails.value").map(|r| r.leaf().case_exact), Some(false));
        assert_eq!(USER_RESOURCE.resolve("id").map(|r| r.leaf().case_exact), Some(true));
        assert_eq!(USER_RESOURCE.resolve("externalId").map(|r| r.leaf().case_exact), Some(true));
        assert_eq!(USER_RESOURCE.resolve("meta.lastModified").map(|r| r.leaf().ty), Some(AttrType::DateTime));
    }

    #[test]
    fn resolves_urn_prefixed_paths() {
        let dep = USER_RESOURCE.resolve("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department");
        assert_eq!(dep.map(|r| r.container), Some(Container::Extension(&ENTERPRISE_USER)));
        let mv = USER_RESOURCE
            .resolve("URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:manager.value")
            .expect("manager.value");
        assert_eq!(mv.canonical(), "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        let core = USER_RESOURCE.resolve("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName");
        assert_eq!(core.map(|r| r.canonical()).as_deref(), Some("name.familyName"));
        assert_eq!(
            USER_RESOURCE.resolve("urn:ietf:params:scim:schemas:core:2.0:User:id").map(|r| r.attr.name),
            Some("id")
        );
    }

    #[test]
    fn unqualified_extension_attributes_resolve_too() {
        let m = USER_RESOURCE.resolve("manager").expect("manager");
        assert_eq!(m.container, Container::Extension(&ENTERPRISE_USER));
    }

    #[test]
    fn unknown_paths_do_not_resolve() {
        for p in [
            "nosuch",
            "name.nosuch",
            "userName.sub",
            "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:",
            "urn:",
            "",
            "members",
        ] {
            assert!(USER_RESOURCE.resolve(p).is_none(), "{p}");
        }
        assert!(GROUP_RESOURCE.resolve("members.value").is_some());
        assert!(GROUP_RESOURCE.resolve("userName").is_none());
    }

    #[test]
    fn characteristics_match_rfc_7643() {
        let groups = USER_RESOURCE.resolve("groups").expect("groups");
        assert_eq!(groups.attr.mutability, Mutability::ReadOnly);
        assert!(groups.attr.multi_valued);
        let pw = USER_RESOURCE.resolve("password").expect("password");
        assert_eq!((pw.attr.mutability, pw.attr.returned), (Mutability::WriteOnly, Returned::Never));
        assert!(USER_RESOURCE.resolve("userName").is_some_and(|r| r.attr.required));
        assert!(GROUP_RESOURCE.resolve("displayName").is_some_and(|r| r.attr.required));
        assert_eq!(
            USER_RESOURCE.resolve("manager.displayName").map(|r| r.leaf().mutability),
            Some(Mutability::ReadOnly)
        );
        assert_eq!(resource_type_for_schema("urn:ietf:params:scim:schemas:core:2.0:group"), Some(&GROUP_RESOURCE));
    }
}
