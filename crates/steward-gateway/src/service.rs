//! Upstream services: their stored definition, and the routing table built from them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use steward_core::OperationClass;
use steward_policy::{ArgDef, ArgType as PolicyArgType, Catalog, OperationDef, ServiceDef};
use steward_store::Store;

use crate::openapi::{ArgType, Operation, ServiceCatalog};
use crate::runtime::RuntimeError;
use crate::ssrf::EgressPolicy;

/// How Steward authenticates to an upstream. Every variant names a vault secret; the
/// agent never sees its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpstreamAuth {
    /// No credential.
    #[default]
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// Vault secret name.
        secret: String,
    },
    /// `Authorization: Basic base64(username:secret)`.
    Basic {
        /// User name (not secret).
        username: String,
        /// Vault secret holding the password.
        secret: String,
    },
    /// A custom header, e.g. `X-Api-Key: <secret>`.
    Header {
        /// Header name.
        name: String,
        /// Vault secret name.
        secret: String,
        /// Optional prefix, e.g. `Token `.
        #[serde(default)]
        prefix: String,
    },
    /// A query parameter, e.g. `?api_key=<secret>`.
    Query {
        /// Parameter name.
        param: String,
        /// Vault secret name.
        secret: String,
    },
    /// OAuth 2.0 client credentials: Steward fetches, caches and refreshes the token.
    Oauth2ClientCredentials {
        /// Token endpoint.
        token_url: String,
        /// Client id (not secret).
        client_id: String,
        /// Vault secret holding the client secret.
        secret: String,
        /// Optional scope.
        #[serde(default)]
        scope: Option<String>,
    },
}

impl UpstreamAuth {
    /// The vault secret this auth uses, if any.
    pub fn secret_name(&self) -> Option<&str> {
        match self {
            Self::None => None,
            Self::Bearer { secret }
            | Self::Basic { secret, .. }
            | Self::Header { secret, .. }
            | Self::Query { secret, .. }
            | Self::Oauth2ClientCredentials { secret, .. } => Some(secret),
        }
    }
}

/// A service as stored and as written in `apply` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name, used in `/gw/{name}/…` and in operation names.
    pub name: String,
    /// `http` (default) or `mcp`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Upstream base URL, e.g. `https://api.github.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Upstream authentication.
    #[serde(default)]
    pub auth: UpstreamAuth,
    /// Allow a plain-HTTP upstream.
    #[serde(default)]
    pub allow_http: bool,
    /// Allow loopback, private and link-local upstream addresses (never metadata).
    #[serde(default)]
    pub allow_private: bool,
    /// PEM CA bundle to verify the upstream with, instead of the system roots.
    #[serde(default)]
    pub ca_bundle: Option<String>,
    /// Vault secret holding a PEM client certificate chain followed by its private key,
    /// presented to the upstream for mutual TLS (HTTP services over `https`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret: Option<String>,
    /// The OpenAPI document the operations came from (JSON or YAML text).
    #[serde(default)]
    pub openapi: Option<String>,
    /// Operations; filled from `openapi` on import.
    #[serde(default)]
    pub operations: Vec<Operation>,
    /// Class overrides by operation name.
    #[serde(default)]
    pub class_overrides: BTreeMap<String, OperationClass>,
    /// Forward requests that match no operation (as operation `unmatched`) instead of denying.
    #[serde(default)]
    pub allow_unmatched: bool,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Dynamic PostgreSQL credentials (kind `postgres`): leases through `POST /v1/leases`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresLeaseSpec>,
    /// How to reach an MCP server (services of kind `mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpSpec>,
}

/// An upstream MCP server: its transport and gateway options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSpec {
    /// stdio or Streamable HTTP.
    pub transport: McpTransport,
    /// How long a tool call needing approval is held (with progress notifications)
    /// before it returns the approval id; 0 returns at once. An agent may ask for another
    /// wait, up to the deployment maximum, with `_meta["steward/wait"]` (seconds).
    #[serde(default)]
    pub approval_wait_secs: u64,
}

/// How Steward talks to an upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum McpTransport {
    /// A child process speaking JSON-RPC lines on stdin/stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Environment variables filled from vault secrets: `ENV_NAME: secret-name`.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Plain (non-secret) environment variables.
        #[serde(default)]
        plain_env: BTreeMap<String, String>,
        /// Working directory.
        #[serde(default)]
        cwd: Option<String>,
    },
    /// Streamable HTTP; the credential comes from the service's `auth` (bearer or header).
    Http {
        /// The MCP endpoint, e.g. `https://mcp.example.com/mcp`.
        url: String,
    },
}

/// How leases on a `postgres` service are made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresLeaseSpec {
    /// Vault secret holding the admin connection URL (a role with CREATEROLE).
    pub admin_dsn_secret: String,
    /// The group role every leased login role is granted.
    pub group_role: String,
    /// Longest lease, in seconds.
    #[serde(default = "default_max_lease_ttl")]
    pub max_ttl_secs: u64,
    /// Lease length when the request names none, in seconds.
    #[serde(default = "default_lease_ttl")]
    pub default_ttl_secs: u64,
}

fn default_max_lease_ttl() -> u64 {
    3600
}

fn default_lease_ttl() -> u64 {
    900
}

/// The operation a lease request is authorized as: `<service>:connect`.
pub const LEASE_OPERATION: &str = "connect";

fn default_kind() -> String {
    "http".into()
}

impl ServiceSpec {
    /// Checks the definition and fills `operations` from `openapi` when present.
    pub fn validate(mut self) -> Result<Self, RuntimeError> {
        steward_core::name::validate(&self.name)
            .map_err(|e| RuntimeError::Invalid(format!("service name: {e}")))?;
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RuntimeError::Invalid(format!(
                "service name `{}` may contain only ASCII letters, digits, `-` and `_`",
                self.name
            )));
        }
        if self.kind == "postgres" {
            let pg = self.postgres.as_ref().ok_or_else(|| {
                RuntimeError::Invalid(format!(
                    "service `{}` of kind postgres needs a `postgres` section",
                    self.name
                ))
            })?;
            crate::pg_roles::check_role_name(&pg.group_role)?;
            if pg.max_ttl_secs == 0
                || pg.default_ttl_secs == 0
                || pg.default_ttl_secs > pg.max_ttl_secs
            {
                return Err(RuntimeError::Invalid(
                    "postgres: ttls must be positive and default_ttl_secs <= max_ttl_secs".into(),
                ));
            }
            // The one operation a database service has: obtaining a credential.
            if !self.operations.iter().any(|op| op.name == LEASE_OPERATION) {
                self.operations.push(Operation {
                    name: LEASE_OPERATION.into(),
                    method: "POST".into(),
                    path_template: "/connect".into(),
                    class: OperationClass::Write,
                    args: Vec::new(),
                    body: None,
                });
            }
        } else if self.postgres.is_some() {
            return Err(RuntimeError::Invalid(
                "a `postgres` section needs kind `postgres`".into(),
            ));
        }
        if self.client_cert_secret.is_some()
            && self.kind != "http"
            && !matches!(
                self.mcp.as_ref().map(|m| &m.transport),
                Some(McpTransport::Http { .. })
            )
        {
            return Err(RuntimeError::Invalid(
                "`client_cert_secret` is supported for services of kind `http` and MCP services over HTTP".into(),
            ));
        }
        if self.kind != "http" && self.kind != "mcp" && self.kind != "postgres" {
            return Err(RuntimeError::Invalid(format!(
                "service kind `{}` is not `http`, `mcp` or `postgres`",
                self.kind
            )));
        }
        if self.kind == "http" {
            let base = self.base_url.as_deref().ok_or_else(|| {
                RuntimeError::Invalid(format!("service `{}` needs a base_url", self.name))
            })?;
            let url = url::Url::parse(base)
                .map_err(|e| RuntimeError::Invalid(format!("base_url `{base}`: {e}")))?;
            if self.client_cert_secret.is_some() && url.scheme() != "https" {
                return Err(RuntimeError::Invalid(format!(
                    "service `{}`: a client certificate needs an https base_url",
                    self.name
                )));
            }
            self.check_scheme("base_url", base, &url)?;
            if url.host_str().is_none() {
                return Err(RuntimeError::Invalid(format!(
                    "base_url `{base}` has no host"
                )));
            }
        }
        if let UpstreamAuth::Oauth2ClientCredentials { token_url, .. } = &self.auth {
            let url = url::Url::parse(token_url)
                .map_err(|e| RuntimeError::Invalid(format!("token_url `{token_url}`: {e}")))?;
            self.check_scheme("token_url", token_url, &url)?;
        }
        if self.kind == "mcp" {
            self.validate_mcp()?;
        } else if self.mcp.is_some() {
            return Err(RuntimeError::Invalid(format!(
                "service `{}` has an `mcp` section but is not of kind `mcp`",
                self.name
            )));
        }
        if let Some(text) = &self.openapi {
            let catalog = ServiceCatalog::from_openapi(text)
                .map_err(|e| RuntimeError::Invalid(format!("openapi: {e}")))?;
            self.operations = catalog.into_operations();
        }
        for op in &mut self.operations {
            if let Some(class) = self.class_overrides.get(&op.name) {
                op.class = *class;
            }
        }
        // Building the router also checks the operations are consistent.
        ServiceCatalog::new(self.operations.clone())
            .map_err(|e| RuntimeError::Invalid(format!("operations: {e}")))?;
        Ok(self)
    }

    /// Checks an MCP service: a transport, a name that keeps `<service>__<tool>` unambiguous.
    /// `https`, or `http` when the service allows plain HTTP; `what` names the field.
    fn check_scheme(&self, what: &str, text: &str, url: &url::Url) -> Result<(), RuntimeError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_http => Ok(()),
            "http" => Err(RuntimeError::Invalid(format!(
                "{what} `{text}` is plain http; set allow_http to permit it"
            ))),
            other => Err(RuntimeError::Invalid(format!(
                "{what} scheme `{other}` is not http(s)"
            ))),
        }
    }

    fn validate_mcp(&self) -> Result<(), RuntimeError> {
        if self.name.contains("__") {
            return Err(RuntimeError::Invalid(format!(
                "MCP service name `{}` may not contain `__` (tools are named `<service>__<tool>`)",
                self.name
            )));
        }
        let mcp = self.mcp.as_ref().ok_or_else(|| {
            RuntimeError::Invalid(format!(
                "MCP service `{}` needs an `mcp` section with a transport",
                self.name
            ))
        })?;
        match &mcp.transport {
            McpTransport::Stdio {
                command,
                env,
                plain_env,
                ..
            } => {
                if command.trim().is_empty() {
                    return Err(RuntimeError::Invalid(
                        "mcp.transport.command is empty".into(),
                    ));
                }
                for name in env.keys().chain(plain_env.keys()) {
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(RuntimeError::Invalid(format!(
                            "environment variable name `{name}` is invalid"
                        )));
                    }
                }
            }
            McpTransport::Http { url } => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| RuntimeError::Invalid(format!("mcp url `{url}`: {e}")))?;
                self.check_scheme("mcp url", url, &parsed)?;
                if self.client_cert_secret.is_some() && parsed.scheme() != "https" {
                    return Err(RuntimeError::Invalid(format!(
                        "service `{}`: a client certificate needs an https mcp url",
                        self.name
                    )));
                }
                if !matches!(
                    self.auth,
                    UpstreamAuth::None | UpstreamAuth::Bearer { .. } | UpstreamAuth::Header { .. }
                ) {
                    return Err(RuntimeError::Invalid(
                        "MCP services support auth `none`, `bearer` and `header`".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The egress policy implied by the service's flags.
    pub fn egress(&self) -> EgressPolicy {
        if self.allow_private {
            EgressPolicy {
                allow_loopback: true,
                allow_private: true,
                allow_link_local: true,
                ..EgressPolicy::public_only()
            }
        } else {
            EgressPolicy::public_only()
        }
    }
}

/// One service ready for routing.
#[derive(Debug)]
pub struct ServiceRuntime {
    /// Its definition.
    pub spec: ServiceSpec,
    /// Its operation router.
    pub catalog: ServiceCatalog,
    /// Parsed base URL.
    pub base: url::Url,
    /// The pooled upstream client, built on first use.
    pub client: std::sync::OnceLock<crate::upstream::UpstreamClient>,
    /// With a client certificate: the client built for the certificate secret's current
    /// version (rebuilt when the secret rotates).
    pub mtls_client: std::sync::Mutex<Option<(u32, crate::upstream::UpstreamClient)>>,
    /// With an OAuth2 client-credentials grant: its upstream-token cache key.
    pub oauth_key: Option<String>,
}

/// All services by name.
#[derive(Debug, Default)]
pub struct ServiceTable {
    services: HashMap<String, Arc<ServiceRuntime>>,
    /// Policy operations of MCP services, from their pinned (approved) tools.
    mcp_operations: HashMap<String, Vec<OperationDef>>,
}

impl ServiceTable {
    /// Loads every stored service; a malformed one is skipped with an error log (its
    /// calls then fail as unknown service, which denies).
    pub async fn load(store: &Store) -> Result<Self, RuntimeError> {
        let mut services = HashMap::new();
        let mut mcp_operations = HashMap::new();
        for record in store.service_list().await? {
            match serde_json::from_value::<ServiceSpec>(record.spec.clone())
                .map_err(|e| RuntimeError::Invalid(e.to_string()))
                .and_then(Self::build)
            {
                Ok(rt) => {
                    if rt.spec.kind == "mcp" {
                        mcp_operations.insert(
                            record.name.clone(),
                            crate::mcp::pins::catalog_operations(store, &rt.spec).await?,
                        );
                    }
                    services.insert(record.name.clone(), Arc::new(rt));
                }
                Err(e) => {
                    tracing::error!(service = %record.name, error = %e, "service definition rejected")
                }
            }
        }
        Ok(Self {
            services,
            mcp_operations,
        })
    }

    /// Builds one service's runtime form.
    pub fn build(spec: ServiceSpec) -> Result<ServiceRuntime, RuntimeError> {
        let catalog = ServiceCatalog::new(spec.operations.clone())
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let base_text = spec
            .base_url
            .clone()
            .unwrap_or_else(|| format!("mcp://{}", spec.name));
        let base = url::Url::parse(&base_text).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        Ok(ServiceRuntime {
            oauth_key: crate::oauth_client::cache_key(&spec),
            spec,
            catalog,
            base,
            client: std::sync::OnceLock::new(),
            mtls_client: std::sync::Mutex::new(None),
        })
    }

    /// This table with `specs` added or replacing services of the same name, for previews
    /// (`apply --dry-run`) that must validate policies against services not yet stored.
    pub fn preview(&self, specs: Vec<ServiceSpec>) -> Result<Self, RuntimeError> {
        let mut services = self.services.clone();
        for spec in specs {
            let name = spec.name.clone();
            services.insert(name, Arc::new(Self::build(spec.validate()?)?));
        }
        Ok(Self {
            services,
            mcp_operations: self.mcp_operations.clone(),
        })
    }

    /// A service by name.
    pub fn get(&self, name: &str) -> Option<Arc<ServiceRuntime>> {
        self.services.get(name).cloned()
    }

    /// All services.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceRuntime>> {
        self.services.values()
    }

    /// The policy catalog: every service's operations with typed arguments.
    pub fn catalog(&self) -> Catalog {
        let mut names: Vec<&String> = self.services.keys().collect();
        names.sort();
        let services = names
            .into_iter()
            .filter_map(|name| self.services.get(name))
            .map(|svc| ServiceDef {
                name: svc.spec.name.clone(),
                operations: if svc.spec.kind == "mcp" {
                    self.mcp_operations
                        .get(&svc.spec.name)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    svc.spec
                        .operations
                        .iter()
                        .map(|op| OperationDef {
                            name: op.name.clone(),
                            class: op.class,
                            args: op
                                .args
                                .iter()
                                .filter_map(|a| {
                                    policy_arg_type(a.ty, a.item_ty).map(|t| ArgDef {
                                        name: a.name.clone(),
                                        arg_type: t,
                                        optional: !a.required,
                                    })
                                })
                                .collect(),
                        })
                        .collect()
                },
            })
            .collect();
        Catalog {
            version: 1,
            identity_labels: Vec::new(),
            services,
        }
    }
}

/// The policy type of an OpenAPI argument; objects and untyped values are not exposed.
pub fn policy_arg_type(ty: ArgType, item: ArgType) -> Option<PolicyArgType> {
    match ty {
        ArgType::String => Some(PolicyArgType::String),
        ArgType::Integer => Some(PolicyArgType::Long),
        ArgType::Number => Some(PolicyArgType::Decimal),
        ArgType::Boolean => Some(PolicyArgType::Bool),
        ArgType::Array => match item {
            ArgType::Integer => Some(PolicyArgType::SetOfLong),
            ArgType::String => Some(PolicyArgType::SetOfString),
            _ => None,
        },
        ArgType::Object | ArgType::Any => None,
    }
}
