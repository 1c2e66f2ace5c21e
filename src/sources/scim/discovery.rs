//! The discovery documents (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`, rendered
//! from the static schemas in [`super::schema`], so what we advertise is what the code enforces.
//!
//! The ServiceProviderConfig is honest about what the service provider does: PATCH, filtering (with a result
//! cap) and ETags are supported; sorting, bulk and changePassword are not. Authentication schemes are the
//! caller's, because authentication is configured per SCIM source elsewhere.

use serde_json::{json, Map, Value};

use super::resource::list_response;
use super::schema::{AttrType, Attribute, ResourceSchema, Schema, RESOURCE_TYPES, SCHEMAS};

pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// One entry of `authenticationSchemes` (RFC 7643 §5).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthScheme {
    /// `oauthbearertoken`, `httpbasic`, `oauth2`, ...
    pub kind: String,
    pub name: String,
    pub description: String,
    pub spec_uri: Option<String>,
    pub documentation_uri: Option<String>,
    pub primary: bool,
}

impl AuthScheme {
    /// A static bearer token or an OAuth 2.0 access token sent as `Authorization: Bearer`.
    pub fn bearer_token(primary: bool) -> AuthScheme {
        AuthScheme {
            kind: "oauthbearertoken".to_string(),
            name: "OAuth Bearer Token".to_string(),
            description: "Authentication with a bearer token in the Authorization header".to_string(),
            spec_uri: Some("https://www.rfc-editor.org/rfc/rfc6750".to_string()),
            documentation_uri: None,
            primary,
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind));
        m.insert("name".into(), json!(self.name));
        m.insert("description".into(), json!(self.description));
        if let Some(u) = &self.spec_uri {
            m.insert("specUri".into(), json!(u));
        }
        if let Some(u) = &self.documentation_uri {
            m.insert("documentationUri".into(), json!(u));
        }
        m.insert("primary".into(), json!(self.primary));
        Value::Object(m)
    }
}

/// What the caller knows and we do not: where we are mounted, how clients authenticate, the result cap.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceProviderOptions {
    /// The SCIM base URL, without a trailing slash (`https://sync.example.com/scim/v2`), for `meta.location`.
    pub base_url: String,
    /// `filter.maxResults`: the most resources one query answers.
    pub max_results: usize,
    pub authentication_schemes: Vec<AuthScheme>,
    pub documentation_uri: Option<String>,
}

/// The `/ServiceProviderConfig` document.
pub fn service_provider_config(opts: &ServiceProviderOptions) -> Value {
    let mut v = json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": opts.max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": opts.authentication_schemes.iter().map(AuthScheme::to_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", opts.base_url),
        },
    });
    if let Some(doc) = &opts.documentation_uri {
        v["documentationUri"] = json!(doc);
    }
    v
}

/// One `/ResourceTypes/{name}` document.
pub fn resource_type(rt: &ResourceSchema, base_url: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.core.id,
        "schemaExtensions": rt.extensions.iter().map(|e| json!({"schema": e.id, "required": false})).collect::<Vec<_>>(),
        "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/{}", rt.name)},
    })
}

/// The `/ResourceTypes` list response.
pub fn resource_types(base_url: &str) -> Value {
    let all: Vec<Value> = RESOURCE_TYPES.iter().map(|rt| resource_type(rt, base_url)).collect();
    let n = all.len();
    list_response(all, n, 1)
}

/// The resource type named `name` (`User`, `Group`), case-insensitively, for `/ResourceTypes/{name}`.
pub fn find_resource_type(name: &str) -> Option<&'static ResourceSchema> {
    RESOURCE_TYPES.iter().copied().find(|r| r.name.eq_ignore_ascii_case(name))
}

/// One `/Schemas/{id}` document.
pub fn schema(s: &Schema, base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": s.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{}", s.id)},
    })
}

/// The `/Schemas` list response.
pub fn schemas(base_url: &str) -> Value {
    let all: Vec<Value> = SCHEMAS.iter().map(|s| schema(s, base_url)).collect();
    let n = all.len();
    list_response(all, n, 1)
}

/// The schema whose id is `id`, case-insensitively, for `/Schemas/{id}`.
pub fn find_schema(id: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().copied().find(|s| s.id.eq_ignore_ascii_case(id))
}

fn attribute_json(a: &Attribute) -> Value {
    // Entra asks for no null members in schema discovery, so optional members are left out, not nulled.
    let mut m = Map::new();
    m.insert("name".into(), json!(a.name));
    m.insert("type".into(), json!(a.ty.as_str()));
    m.insert("multiValued".into(), json!(a.multi_valued));
    m.insert("description".into(), json!(a.description));
    m.insert("required".into(), json!(a.required));
    if matches!(a.ty, AttrType::String | AttrType::Reference) {
        m.insert("caseExact".into(), json!(a.case_exact));
    }
    if !a.canonical_values.is_empty() {
        m.insert("canonicalValues".into(), json!(a.canonical_values));
    }
    if a.ty == AttrType::Reference {
        m.insert("referenceTypes".into(), json!(a.reference_types));
    }
    if a.ty == AttrType::Complex {
        m.insert("subAttributes".into(), Value::Array(a.sub_attributes.iter().map(attribute_json).collect()));
    }
    m.insert("mutability".into(), json!(a.mutability.as_str()));
    m.insert("returned".into(), json!(a.returned.as_str()));
    if a.ty != AttrType::Complex && a.ty != AttrType::Boolean {
        m.insert("uniqueness".into(), json!(a.uniqueness.as_str()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ServiceProviderOptions {
        ServiceProviderOptions {
            base_url: "https://sync.example.com/scim/v2".into(),
            max_results: 200,
            authentication_schemes: vec![AuthScheme::bearer_token(true)],
            documentation_uri: None,
        }
    }

    #[test]
    fn service_provider_config_is_honest() {
        let v = service_provider_config(&opts());
        assert_eq!(v["schemas"][0], SERVICE_PROVIDER_CONFIG_SCHEMA);
        assert_eq!(v["patch"]["supported"], true);
        assert_eq!(v["filter"], json!({"supported": true, "maxResults": 200}));
        assert_eq!(v["etag"]["supported"], true);
        assert_eq!(v["sort"]["supported"], false);
        assert_eq!(v["bulk"]["supported"], false);
        assert_eq!(v["changePassword"]["supported"], false);
        assert_eq!(v["authenticationSchemes"][0]["type"], "oauthbearertoken");
        assert_eq!(v["authenticationSchemes"][0]["primary"], true);
        assert_eq!(v["meta"]["location"], "https://sync.example.com/scim/v2/ServiceProviderConfig");
        assert!(v.get("documentationUri").is_none());
    }

    #[test]
    fn resource_types_name_their_schemas() {
        let v = resource_types("/scim/v2");
        assert_eq!(v["totalResults"], 2);
        let user = &v["Resources"][0];
        assert_eq!(user["endpoint"], "/Users");
        assert_eq!(user["schema"], "urn:ietf:params:scim:schemas:core:2.0:User");
        assert_eq!(user["schemaExtensions"][0]["schema"], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User");
        assert_eq!(v["Resources"][1]["schemaExtensions"], json!([]));
        assert_eq!(find_resource_type("group").map(|r| r.endpoint), Some("/Groups"));
    }

    #[test]
    fn schemas_describe_every_attribute_without_nulls() {
        let v = schemas("/scim/v2");
        assert_eq!(v["totalResults"], 3);
        let user = &v["Resources"][0];
        assert_eq!(user["id"], "urn:ietf:params:scim:schemas:core:2.0:User");
        let attrs = user["attributes"].as_array().expect("attributes");
        let user_name = attrs.iter().find(|a| a["name"] == "userName").expect("userName");
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["uniqueness"], "server");
        assert_eq!(user_name["caseExact"], false);
        let emails = attrs.iter().find(|a| a["name"] == "emails").expect("emails");
        assert_eq!(emails["multiValued"], true);
        assert_eq!(emails["subAttributes"].as_array().map(Vec::len), Some(4));
        let groups = attrs.iter().find(|a| a["name"] == "groups").expect("groups");
        assert_eq!(groups["mutability"], "readOnly");
        assert!(!v.to_string().contains("null"));
        assert!(find_schema("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:GROUP").is_some());
        assert_eq!(
            schema(&super::super::schema::GROUP, "/x")["meta"]["location"],
            "/x/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group"
        );
    }
}
