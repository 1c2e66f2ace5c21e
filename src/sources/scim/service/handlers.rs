//! The endpoints: discovery, and GET/POST/PUT/PATCH/DELETE on Users and Groups. Each reads the request, calls
//! the pure core, reads or writes the store, and answers in SCIM's shapes; errors go through the one table.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{read_body, Service};
use crate::directory::{Expect, MemberChange, MemberKind, ScimIndex, ScimKind, ScimRecord, ScimWrite, StoreError};
use crate::sources::scim::discovery;
use crate::sources::scim::error::{ScimError, SCIM_CONTENT_TYPE};
use crate::sources::scim::filter::{self, Filter};
use crate::sources::scim::mapping::{self, Lookup};
use crate::sources::scim::patch::{self, PatchRequest};
use crate::sources::scim::resource::{self, list_response, Meta};
use crate::sources::scim::schema::{ResourceSchema, GROUP_RESOURCE, USER_RESOURCE};

type Svc = State<Arc<Service>>;
type Params = Query<HashMap<String, String>>;

/// Resources read per store query while a filter no index answers is evaluated.
const SCAN_BATCH: u64 = 500;

pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/.search", post(search_not_supported))
        .route("/Users/.search", post(search_not_supported))
        .route("/Groups/.search", post(search_not_supported))
        .route(
            "/Users",
            get(|s: Svc, q: Params| async move { list(&s, ScimKind::User, &q).await.into_response() })
                .post(|s: Svc, b: Body| async move { create(&s, ScimKind::User, b).await.into_response() }),
        )
        .route(
            "/Users/{id}",
            get(|s: Svc, p: Path<String>, q: Params| async move { read(&s, ScimKind::User, &p, &q).await.into_response() })
                .put(|s: Svc, p: Path<String>, h: HeaderMap, b: Body| async move {
                    replace(&s, ScimKind::User, &p, &h, b).await.into_response()
                })
                .patch(|s: Svc, p: Path<String>, h: HeaderMap, b: Body| async move {
                    modify(&s, ScimKind::User, &p, &h, b).await.into_response()
                })
                .delete(|s: Svc, p: Path<String>, h: HeaderMap| async move {
                    remove(&s, ScimKind::User, &p, &h).await.into_response()
                }),
        )
        .route(
            "/Groups",
            get(|s: Svc, q: Params| async move { list(&s, ScimKind::Group, &q).await.into_response() })
                .post(|s: Svc, b: Body| async move { create(&s, ScimKind::Group, b).await.into_response() }),
        )
        .route(
            "/Groups/{id}",
            get(|s: Svc, p: Path<String>, q: Params| async move { read(&s, ScimKind::Group, &p, &q).await.into_response() })
                .put(|s: Svc, p: Path<String>, h: HeaderMap, b: Body| async move {
                    replace(&s, ScimKind::Group, &p, &h, b).await.into_response()
                })
                .patch(|s: Svc, p: Path<String>, h: HeaderMap, b: Body| async move {
                    modify(&s, ScimKind::Group, &p, &h, b).await.into_response()
                })
                .delete(|s: Svc, p: Path<String>, h: HeaderMap| async move {
                    remove(&s, ScimKind::Group, &p, &h).await.into_response()
                }),
        )
}

fn schema_of(kind: ScimKind) -> &'static ResourceSchema {
    match kind {
        ScimKind::User => &USER_RESOURCE,
        ScimKind::Group => &GROUP_RESOURCE,
    }
}

/// A SCIM JSON answer, with `ETag` and `Location` when given.
fn answer(status: StatusCode, body: &Value, etag: Option<&str>, location: Option<&str>) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
    for (name, v) in [(header::ETAG, etag), (header::LOCATION, location)] {
        if let Some(v) = v.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    resp
}

/// A resource answer: its ETag and Location come from its `meta`.
fn resource_answer(status: StatusCode, body: &Value) -> Response {
    let etag = body["meta"]["version"].as_str();
    let location = body["meta"]["location"].as_str();
    answer(status, body, etag, if status == StatusCode::CREATED { location } else { None })
}

fn store_error(e: StoreError, kind: ScimKind, id: &str) -> ScimError {
    match e {
        StoreError::Conflict(m) => ScimError::uniqueness(m),
        StoreError::NotFound => ScimError::not_found(schema_of(kind).name, id),
        e @ StoreError::MissingMember(_) => ScimError::invalid_value(e.to_string()),
        StoreError::Precondition { .. } => {
            ScimError::new(412, None, "the resource changed while this request was handled; read it again")
        }
        other => {
            tracing::error!(error = %other, "SCIM: the store failed");
            ScimError::unavailable("the directory store is not available now; retry later")
        }
    }
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn int_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ScimError> {
    match param(q, name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, not {v:?}"))),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(bytes).map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ------------------------------------------------------------------------------------------------ discovery

async fn service_provider_config(State(s): Svc) -> Response {
    answer(StatusCode::OK, &discovery::service_provider_config(&s.provider_options()), None, None)
}

async fn resource_types(State(s): Svc) -> Response {
    answer(StatusCode::OK, &discovery::resource_types(&s.settings.base_url), None, None)
}

async fn resource_type(State(s): Svc, Path(name): Path<String>) -> Response {
    match discovery::find_resource_type(&name) {
        Some(rt) => answer(StatusCode::OK, &discovery::resource_type(rt, &s.settings.base_url), None, None),
        None => ScimError::not_found("ResourceType", &name).into_response(),
    }
}

async fn schemas(State(s): Svc) -> Response {
    answer(StatusCode::OK, &discovery::schemas(&s.settings.base_url), None, None)
}

async fn schema(State(s): Svc, Path(id): Path<String>) -> Response {
    match discovery::find_schema(&id) {
        Some(sc) => answer(StatusCode::OK, &discovery::schema(sc, &s.settings.base_url), None, None),
        None => ScimError::not_found("Schema", &id).into_response(),
    }
}

/// POST `.search` (RFC 7644 §3.4.3) is not offered: IdPs query with GET. 501 is what the RFC gives for it.
async fn search_not_supported() -> ScimError {
    ScimError::not_implemented("POST .search (query with GET and a filter)")
}

// ------------------------------------------------------------------------------------------------ rendering

impl Service {
    fn location(&self, kind: ScimKind, id: &str) -> String {
        format!("{}{}/{id}", self.settings.base_url, schema_of(kind).endpoint)
    }

    /// The representation of a stored resource: with `id`, `meta` (its ETag) and, when `derived`, a User's
    /// read-only `groups` or a Group's `members` from the directory's rows.
    async fn render(&self, kind: ScimKind, rec: &ScimRecord, derived: bool) -> Result<Value, ScimError> {
        let mut res = rec.resource.clone();
        if derived {
            let name = &self.settings.name;
            let list: Vec<Value> = match kind {
                ScimKind::User => self
                    .store
                    .scim_groups_of(name, &rec.id)
                    .await
                    .map_err(|e| store_error(e, kind, &rec.id))?
                    .into_iter()
                    .map(|(gid, display)| {
                        json!({"value": gid, "$ref": self.location(ScimKind::Group, &gid), "display": display,
                               "type": "direct"})
                    })
                    .collect(),
                ScimKind::Group => {
                    let displays: HashMap<String, Value> = res
                        .get("members")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|m| Some((m.get("value")?.as_str()?.to_string(), m.get("display")?.clone())))
                        .collect();
                    self.store
                        .scim_members(name, &rec.id)
                        .await
                        .map_err(|e| store_error(e, kind, &rec.id))?
                        .into_iter()
                        .map(|(mid, mk)| {
                            let (t, k) = match mk {
                                MemberKind::User => ("User", ScimKind::User),
                                MemberKind::Group => ("Group", ScimKind::Group),
                            };
                            let mut v = json!({"value": mid, "$ref": self.location(k, &mid), "type": t});
                            if let Some(d) = displays.get(&mid) {
                                v["display"] = d.clone();
                            }
                            v
                        })
                        .collect()
                }
            };
            let key = if kind == ScimKind::User { "groups" } else { "members" };
            match (list.is_empty(), &mut res) {
                (true, Value::Object(m)) => {
                    m.remove(key);
                }
                _ => res[key] = Value::Array(list),
            }
        } else if let Value::Object(m) = &mut res {
            m.remove("members");
        }
        let location = self.location(kind, &rec.id);
        let (created, modified) = (time(rec.created_at), time(rec.updated_at));
        resource::stamp(
            &mut res,
            &rec.id,
            schema_of(kind),
            Meta { created: &created, last_modified: &modified, location: &location },
        );
        Ok(res)
    }

    async fn current(&self, kind: ScimKind, id: &str) -> Result<ScimRecord, ScimError> {
        self.store
            .scim_get(&self.settings.name, kind, id)
            .await
            .map_err(|e| store_error(e, kind, id))?
            .ok_or_else(|| ScimError::not_found(schema_of(kind).name, id))
    }
}

/// `If-Match` against the current representation's version: 412 when it names another one.
fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), ScimError> {
    let Some(h) = headers.get(header::IF_MATCH) else { return Ok(()) };
    let h = String::from_utf8_lossy(h.as_bytes());
    let etag = current["meta"]["version"].as_str().unwrap_or_default();
    if resource::etag_matches(&h, etag) {
        Ok(())
    } else {
        Err(ScimError::precondition_failed(etag))
    }
}

// ------------------------------------------------------------------------------------------------ reads

async fn read(s: &Service, kind: ScimKind, id: &str, q: &HashMap<String, String>) -> Result<Response, ScimError> {
    let rec = s.current(kind, id).await?;
    let (attributes, excluded) = (param(q, "attributes"), param(q, "excludedAttributes"));
    let body = s.render(kind, &rec, wants_derived(kind, attributes, excluded)).await?;
    let etag = body["meta"]["version"].as_str().map(str::to_string);
    let shown = resource::project(&body, attributes, excluded, schema_of(kind));
    Ok(answer(StatusCode::OK, &shown, etag.as_deref(), None))
}

/// False when the client excluded the derived attribute (Entra's `excludedAttributes=members` on large groups),
/// or asked only for others: its rows are then not read.
fn wants_derived(kind: ScimKind, attributes: Option<&str>, excluded: Option<&str>) -> bool {
    let name = if kind == ScimKind::User { "groups" } else { "members" };
    let names =
        |list: &str| list.split(',').any(|a| a.trim().split('.').next().is_some_and(|x| x.eq_ignore_ascii_case(name)));
    if excluded.is_some_and(names) {
        return false;
    }
    attributes.filter(|a| !a.trim().is_empty()).is_none_or(names)
}

/// Whether a filter names a derived attribute, so candidates must be rendered with their rows to be judged.
fn filter_needs_derived(f: &Filter) -> bool {
    match f {
        Filter::And(items) | Filter::Or(items) => items.iter().any(filter_needs_derived),
        Filter::Not(inner) => filter_needs_derived(inner),
        Filter::Present(p) | Filter::Compare { path: p, .. } => p.resolved.as_ref().is_some_and(mapping::needs_derived),
        Filter::ValuePath { attr, .. } => attr.resolved.as_ref().is_some_and(mapping::needs_derived),
    }
}

async fn list(s: &Service, kind: ScimKind, q: &HashMap<String, String>) -> Result<Response, ScimError> {
    let schema = schema_of(kind);
    let page = resource::page(int_param(q, "startIndex")?, int_param(q, "count")?, s.settings.max_results);
    let (attributes, excluded) = (param(q, "attributes"), param(q, "excludedAttributes"));
    let derived = wants_derived(kind, attributes, excluded);
    let name = &s.settings.name;
    let filter = match param(q, "filter").filter(|f| !f.trim().is_empty()) {
        Some(text) => Some(filter::parse(text, schema)?),
        None => None,
    };
    let mut shown = Vec::new();
    let total;
    match &filter {
        None => {
            total = s.store.scim_count(name, kind).await.map_err(|e| store_error(e, kind, ""))? as usize;
            if page.limit > 0 {
                let recs = s
                    .store
                    .scim_scan(name, kind, page.offset as u64, page.limit as u64)
                    .await
                    .map_err(|e| store_error(e, kind, ""))?;
                for r in &recs {
                    shown.push(resource::project(&s.render(kind, r, derived).await?, attributes, excluded, schema));
                }
            }
        }
        Some(f) => {
            let judge_derived = filter_needs_derived(f);
            let mut n = 0usize;
            let mut consider = |rendered: Value, shown: &mut Vec<Value>| {
                if f.matches(&rendered) {
                    if n >= page.offset && shown.len() < page.limit {
                        shown.push(rendered);
                    }
                    n += 1;
                }
            };
            match indexed(f, schema) {
                Some((lookup, value)) => {
                    let recs = match lookup {
                        Lookup::Id => s
                            .store
                            .scim_get(name, kind, &value)
                            .await
                            .map_err(|e| store_error(e, kind, ""))?
                            .into_iter()
                            .collect(),
                        other => {
                            let index = match other {
                                Lookup::Name => ScimIndex::Name,
                                Lookup::ExternalId => ScimIndex::ExternalId,
                                _ => ScimIndex::Email,
                            };
                            s.store.scim_find(name, kind, index, &value).await.map_err(|e| store_error(e, kind, ""))?
                        }
                    };
                    for r in &recs {
                        consider(s.render(kind, r, judge_derived || derived).await?, &mut shown);
                    }
                }
                None => {
                    let mut offset = 0u64;
                    loop {
                        let recs = s
                            .store
                            .scim_scan(name, kind, offset, SCAN_BATCH)
                            .await
                            .map_err(|e| store_error(e, kind, ""))?;
                        for r in &recs {
                            consider(s.render(kind, r, judge_derived || derived).await?, &mut shown);
                        }
                        if (recs.len() as u64) < SCAN_BATCH {
                            break;
                        }
                        offset += SCAN_BATCH;
                    }
                }
            }
            total = n;
            shown = shown.iter().map(|r| resource::project(r, attributes, excluded, schema)).collect();
        }
    }
    Ok(answer(StatusCode::OK, &list_response(shown, total, page.start_index), None, None))
}

/// The index lookup for a filter, if the store has one for it.
fn indexed(f: &Filter, schema: &ResourceSchema) -> Option<(Lookup, String)> {
    let eq = f.as_simple_eq()?;
    let lookup = mapping::lookup_for(schema.name, &eq.path)?;
    Some((lookup, eq.value.to_string()))
}

// ------------------------------------------------------------------------------------------------ writes

/// A write's plan: what the store is told, and which users the reconciler should look at.
struct Prepared {
    write: ScimWrite,
    touched: BTreeSet<String>,
}

impl Service {
    /// Builds the store write for `resource` (normalized or patched, without `meta` and derived attributes).
    async fn prepare(
        &self,
        kind: ScimKind,
        id: &str,
        mut resource: Value,
        expect: Expect,
        members: Option<MemberChangeSpec>,
    ) -> Result<Prepared, ScimError> {
        if let Value::Object(m) = &mut resource {
            m.remove("meta");
            m.remove("groups");
            // Members are rows; only the `display` a client gave each is kept with the resource, to be shown back.
            let displays: Vec<Value> = match m.remove("members") {
                Some(Value::Array(items)) => items
                    .into_iter()
                    .filter_map(|i| {
                        let value = i.get("value")?.as_str()?.to_string();
                        let display = i.get("display")?.as_str()?.to_string();
                        Some(json!({"value": value, "display": display}))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if !displays.is_empty() {
                m.insert("members".into(), Value::Array(displays));
            }
            m.insert("id".into(), Value::String(id.to_string()));
        }
        let mut touched = BTreeSet::new();
        let write = match kind {
            ScimKind::User => {
                let mut warnings = Vec::new();
                let identity = mapping::identity(id, &resource, &self.settings.attributes, &mut warnings)?;
                for w in warnings {
                    tracing::warn!(source = %self.settings.name, user = %id, "{w}");
                }
                touched.insert(id.to_string());
                ScimWrite {
                    kind,
                    id: id.to_string(),
                    name: mapping::string_attr(&resource, "userName").unwrap_or_else(|| identity.user_name.clone()),
                    emails: mapping::emails(&resource),
                    external_ref: mapping::string_attr(&resource, "externalId"),
                    identity: Some(identity),
                    group: None,
                    members: None,
                    resource,
                    expect,
                }
            }
            ScimKind::Group => {
                let group = mapping::group(id, &resource)?;
                let change = match members {
                    None => None,
                    Some(spec) => Some(self.member_change(id, spec, &mut touched).await?),
                };
                ScimWrite {
                    kind,
                    id: id.to_string(),
                    name: group.name.clone(),
                    emails: Vec::new(),
                    external_ref: mapping::string_attr(&resource, "externalId"),
                    identity: None,
                    group: Some(group),
                    members: change,
                    resource,
                    expect,
                }
            }
        };
        Ok(Prepared { write, touched })
    }

    /// Resolves member ids to users or groups (an unknown id is `invalidValue`: a membership of nobody would
    /// be a phantom) and collects the users touched.
    async fn member_change(
        &self,
        group_id: &str,
        spec: MemberChangeSpec,
        touched: &mut BTreeSet<String>,
    ) -> Result<MemberChange, ScimError> {
        let name = &self.settings.name;
        let mut resolve = Vec::new();
        let (adds, removes, replace) = match spec {
            MemberChangeSpec::Replace(all) => (all, Vec::new(), true),
            MemberChangeSpec::Delta { add, remove } => (add, remove, false),
        };
        if adds.iter().any(|m| m == group_id) {
            return Err(ScimError::invalid_value("a group cannot be a member of itself"));
        }
        let kinds = self.store.scim_kinds(name, &adds).await.map_err(|e| store_error(e, ScimKind::Group, group_id))?;
        for m in adds {
            let Some(kind) = kinds.get(&m).copied() else {
                return Err(ScimError::invalid_value(format!(
                    "member {m:?} is no User or Group of this service provider"
                )));
            };
            if kind == MemberKind::User {
                touched.insert(m.clone());
            }
            resolve.push((m, kind));
        }
        touched.extend(removes.iter().cloned());
        if replace {
            // Everyone who was a member is touched too: they may have left.
            for (m, k) in
                self.store.scim_members(name, group_id).await.map_err(|e| store_error(e, ScimKind::Group, group_id))?
            {
                if k == MemberKind::User {
                    touched.insert(m);
                }
            }
            Ok(MemberChange::Replace(resolve))
        } else {
            Ok(MemberChange::Delta { add: resolve, remove: removes })
        }
    }

    async fn commit(&self, kind: ScimKind, p: Prepared) -> Result<ScimRecord, ScimError> {
        let id = p.write.id.clone();
        let rec = self.store.scim_put(&self.settings.name, p.write).await.map_err(|e| store_error(e, kind, &id))?;
        self.touched(p.touched);
        Ok(rec)
    }

    /// The users in a group now (a rename or a deletion changes what each of them gets).
    async fn user_members(&self, group_id: &str) -> Result<Vec<String>, ScimError> {
        Ok(self
            .store
            .scim_members(&self.settings.name, group_id)
            .await
            .map_err(|e| store_error(e, ScimKind::Group, group_id))?
            .into_iter()
            .filter(|(_, k)| *k == MemberKind::User)
            .map(|(m, _)| m)
            .collect())
    }
}

enum MemberChangeSpec {
    Replace(Vec<String>),
    Delta { add: Vec<String>, remove: Vec<String> },
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn create(s: &Service, kind: ScimKind, body: Body) -> Result<Response, ScimError> {
    let json = parse_json(&read_body(s, body).await?)?;
    let normalized = resource::normalize(&json, schema_of(kind))?;
    let id = new_id();
    let members =
        (kind == ScimKind::Group).then(|| MemberChangeSpec::Replace(mapping::member_values(&normalized.resource)));
    let p = s.prepare(kind, &id, normalized.resource, Expect::Absent, members).await?;
    let rec = s.commit(kind, p).await?;
    Ok(resource_answer(StatusCode::CREATED, &s.render(kind, &rec, true).await?))
}

/// How often a write is tried again when another request changed the resource between its read and its commit.
/// Only without `If-Match`: with it, the client asked for exactly that version, and gets 412.
const WRITE_ATTEMPTS: usize = 5;

/// True when `e` is a lost race the server may resolve by reading again (no `If-Match` was given).
fn lost_race(e: &ScimError, headers: &HeaderMap, attempt: usize) -> bool {
    e.status == 412 && headers.get(header::IF_MATCH).is_none() && attempt + 1 < WRITE_ATTEMPTS
}

async fn replace(
    s: &Service,
    kind: ScimKind,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let json = parse_json(&read_body(s, body).await?)?;
    let normalized = resource::normalize(&json, schema_of(kind))?;
    let mut attempt = 0;
    loop {
        let guard = s.lock(kind, id).await;
        let result = replace_once(s, kind, id, headers, &normalized.resource).await;
        drop(guard);
        match result {
            Err(e) if lost_race(&e, headers, attempt) => attempt += 1,
            other => return other,
        }
    }
}

async fn replace_once(
    s: &Service,
    kind: ScimKind,
    id: &str,
    headers: &HeaderMap,
    resource: &Value,
) -> Result<Response, ScimError> {
    let cur = s.current(kind, id).await?;
    check_if_match(headers, &s.render(kind, &cur, true).await?)?;
    let members = (kind == ScimKind::Group).then(|| MemberChangeSpec::Replace(mapping::member_values(resource)));
    let renamed = kind == ScimKind::Group && cur.resource.get("displayName") != resource.get("displayName");
    let mut p = s.prepare(kind, id, resource.clone(), Expect::Present { rev: Some(cur.rev) }, members).await?;
    if renamed {
        p.touched.extend(s.user_members(id).await?);
    }
    let rec = s.commit(kind, p).await?;
    Ok(resource_answer(StatusCode::OK, &s.render(kind, &rec, true).await?))
}

async fn modify(s: &Service, kind: ScimKind, id: &str, headers: &HeaderMap, body: Body) -> Result<Response, ScimError> {
    // The message first: a malformed PATCH is 400 whatever it names.
    let json = parse_json(&read_body(s, body).await?)?;
    let req = PatchRequest::from_json(&json)?;
    // Entra sends membership PATCHes of one group concurrently: a lost race is read again and re-applied.
    let mut attempt = 0;
    loop {
        let guard = s.lock(kind, id).await;
        let result = modify_once(s, kind, id, headers, &req).await;
        drop(guard);
        match result {
            Err(e) if lost_race(&e, headers, attempt) => attempt += 1,
            other => return other,
        }
    }
}

async fn modify_once(
    s: &Service,
    kind: ScimKind,
    id: &str,
    headers: &HeaderMap,
    req: &PatchRequest,
) -> Result<Response, ScimError> {
    let cur = s.current(kind, id).await?;
    let shown = s.render(kind, &cur, true).await?;
    check_if_match(headers, &shown)?;
    let mut base = shown;
    if let Value::Object(m) = &mut base {
        m.remove("meta");
    }
    let out = patch::apply(&base, req, schema_of(kind))?;
    let rec = if out.changed {
        let members = (kind == ScimKind::Group)
            .then(|| MemberChangeSpec::Delta { add: out.members_added.clone(), remove: out.members_removed.clone() });
        let renamed = kind == ScimKind::Group && base.get("displayName") != out.resource.get("displayName");
        let mut p = s.prepare(kind, id, out.resource, Expect::Present { rev: Some(cur.rev) }, members).await?;
        if renamed {
            p.touched.extend(s.user_members(id).await?);
        }
        s.commit(kind, p).await?
    } else {
        cur
    };
    // RFC 7644 §3.5.2: 200 with the resource, or 204. Groups get 204 (Entra expects it, and a large group's
    // members would be sent back for nothing); Users get the resource (Okta reads it).
    match kind {
        ScimKind::Group => {
            let body = s.render(kind, &rec, true).await?;
            let mut resp = StatusCode::NO_CONTENT.into_response();
            if let Some(v) = body["meta"]["version"].as_str().and_then(|v| HeaderValue::from_str(v).ok()) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            Ok(resp)
        }
        ScimKind::User => Ok(resource_answer(StatusCode::OK, &s.render(kind, &rec, true).await?)),
    }
}

async fn remove(s: &Service, kind: ScimKind, id: &str, headers: &HeaderMap) -> Result<Response, ScimError> {
    let mut attempt = 0;
    loop {
        let guard = s.lock(kind, id).await;
        let result = remove_once(s, kind, id, headers).await;
        drop(guard);
        match result {
            Err(e) if lost_race(&e, headers, attempt) => attempt += 1,
            other => return other,
        }
    }
}

async fn remove_once(s: &Service, kind: ScimKind, id: &str, headers: &HeaderMap) -> Result<Response, ScimError> {
    let cur = s.current(kind, id).await?;
    check_if_match(headers, &s.render(kind, &cur, true).await?)?;
    let touched: Vec<String> = match kind {
        ScimKind::User => vec![id.to_string()],
        ScimKind::Group => s.user_members(id).await?,
    };
    let name = &s.settings.name;
    match s.store.scim_delete(name, kind, id, Some(cur.rev)).await.map_err(|e| store_error(e, kind, id))? {
        true => {
            s.touched(touched);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        false => Err(ScimError::not_found(schema_of(kind).name, id)),
    }
}
