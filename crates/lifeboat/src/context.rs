//! What every command needs: the plan (when there is one), the repository's location and
//! password, and the repository opened from them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use lifeboat_plan::{Plan, RepositoryLocation};
use lifeboat_repository::Repository;
use lifeboat_storage::{Backend, ObjectStoreBackend, Options};

use crate::cli::Global;

/// A plan that failed to load; printed as diagnostics, exit code 2.
#[derive(Debug)]
pub struct PlanFailed(pub lifeboat_plan::PlanErrors);

impl std::fmt::Display for PlanFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the plan {} is not valid", self.0.file().display())
    }
}

impl std::error::Error for PlanFailed {}

pub struct Context {
    pub global: Global,
    plan: Option<Plan>,
}

impl Context {
    /// Loads the plan named by `--plan`, or `./lifeboat.toml` when it exists.
    pub fn new(global: Global) -> Result<Self> {
        let path = match &global.plan {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("lifeboat.toml")).filter(|p| p.is_file()),
        };
        let plan = match path {
            Some(path) => Some(lifeboat_plan::load(&path).map_err(PlanFailed)?),
            None => None,
        };
        Ok(Context { global, plan })
    }

    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    pub fn require_plan(&self) -> Result<&Plan> {
        self.plan
            .as_ref()
            .ok_or_else(|| anyhow!("no plan: give --plan FILE, or run where ./lifeboat.toml is"))
    }

    /// The plan's site `name`; an unknown name is a usage error that lists the sites.
    pub fn require_site(&self, name: &str) -> Result<&lifeboat_plan::Site> {
        let plan = self.require_plan()?;
        plan.site(name).ok_or_else(|| {
            crate::output::usage(format!(
                "the plan has no site `{name}`; it has: {}",
                plan.sites.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// `lifeboat --plan <file> [--repo <url>] <args>` as an operator types it anywhere
    /// (the plan file absolute; each word quoted for a POSIX shell where needed): what an
    /// alert tells them to run.
    pub fn command_line(&self, args: &[&str]) -> String {
        let mut argv = vec!["lifeboat".to_string()];
        if let Some(plan) = &self.plan {
            let file =
                std::fs::canonicalize(plan.file()).unwrap_or_else(|_| plan.file().to_path_buf());
            argv.extend(["--plan".to_string(), file.display().to_string()]);
        }
        if let Some(repo) = &self.global.repository {
            // Alerts travel: a credential in the URL is shown as `****`, to be filled in.
            argv.extend(["--repo".to_string(), lifeboat_plan::masked(repo)]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.iter()
            .map(|a| shell_word(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn location(&self) -> Result<(String, Options)> {
        if let Some(url) = &self.global.repository {
            return Ok((url.clone(), Vec::new()));
        }
        let Some(plan) = &self.plan else {
            bail!(
                "no repository: set LIFEBOAT_REPOSITORY, give --repo URL, or use a plan with [repository]"
            )
        };
        let repo = &plan.repository;
        let url = match &repo.location {
            RepositoryLocation::Local(path) => path.display().to_string(),
            RepositoryLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            RepositoryLocation::Azure { container, prefix } => {
                format!("azblob://{container}/{prefix}")
            }
            RepositoryLocation::Gcs { bucket, prefix } => format!("gs://{bucket}/{prefix}"),
        };
        Ok((url, store_options(plan)?))
    }

    /// The password: `LIFEBOAT_PASSWORD`, `LIFEBOAT_PASSWORD_FILE`, or the plan's reference.
    fn password(&self) -> Result<String> {
        if let Some(p) = std::env::var_os("LIFEBOAT_PASSWORD") {
            if p.is_empty() && std::env::var_os("LIFEBOAT_PASSWORD_FILE").is_none() {
                bail!("LIFEBOAT_PASSWORD is set but empty");
            }
            if !p.is_empty() {
                return p
                    .into_string()
                    .map_err(|_| anyhow!("LIFEBOAT_PASSWORD is not valid UTF-8"));
            }
        }
        if let Some(file) = std::env::var_os("LIFEBOAT_PASSWORD_FILE").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "reading LIFEBOAT_PASSWORD_FILE {}",
                    PathBuf::from(&file).display()
                )
            })?;
            return Ok(text.strip_suffix('\n').unwrap_or(&text).to_string());
        }
        if let Some(plan) = &self.plan {
            let value = plan
                .repository
                .password
                .resolve()
                .context("resolving the plan's repository.password")?;
            return Ok(value.expose().to_string());
        }
        bail!(
            "no repository password: set LIFEBOAT_PASSWORD or LIFEBOAT_PASSWORD_FILE, or use a plan"
        )
    }

    pub fn backend(&self, create: bool) -> Result<Arc<dyn Backend>> {
        let (url, options) = self.location()?;
        Ok(Arc::new(ObjectStoreBackend::open(&url, &options, create)?))
    }

    pub fn open_repository(&self) -> Result<Repository> {
        let backend = self.backend(false)?;
        let password = self.password()?;
        let cache = lifeboat_repository::default_cache_root();
        Ok(Repository::open(
            backend,
            password.as_bytes(),
            cache.as_deref(),
        )?)
    }

    /// The repository opened for a backup: a backup marker is written before the index is
    /// read, so a prune spares what this backup may deduplicate against (removed on drop).
    pub fn open_repository_for_backup(&self) -> Result<Repository> {
        let backend = self.backend(false)?;
        let password = self.password()?;
        let cache = lifeboat_repository::default_cache_root();
        Ok(Repository::open_for_backup(
            backend,
            password.as_bytes(),
            cache.as_deref(),
            lifeboat_repository::lease::Holder::current(),
        )?)
    }

    pub fn init_repository(&self) -> Result<(String, lifeboat_repository::Config)> {
        let password = self.password()?;
        let backend = self.backend(true)?;
        let config = Repository::init(
            backend.clone(),
            password.as_bytes(),
            lifeboat_format::keys::KdfParams::OWASP_MINIMUM,
        )?;
        Ok((backend.location().to_string(), config))
    }
}

/// The plan's object-store settings as `object_store` configuration keys.
fn store_options(plan: &Plan) -> Result<Options> {
    let s = &plan.repository.store;
    let mut out: Options = Vec::new();
    let scheme = plan.repository.location.scheme();
    let mut put = |key: &str, value: String| out.push((key.to_string(), value));
    let secret = |name: &str, v: &lifeboat_plan::Secret| -> Result<String> {
        Ok(v.resolve()
            .with_context(|| format!("resolving repository.{name}"))?
            .expose()
            .to_string())
    };
    match scheme {
        "s3" => {
            if let Some(v) = &s.endpoint {
                put("aws_endpoint", v.clone());
            }
            if let Some(v) = &s.region {
                put("aws_region", v.clone());
            }
            if let Some(v) = &s.access_key {
                put("aws_access_key_id", secret("access_key", v)?);
            }
            if let Some(v) = &s.secret_key {
                put("aws_secret_access_key", secret("secret_key", v)?);
            }
            if let Some(v) = &s.session_token {
                put("aws_session_token", secret("session_token", v)?);
            }
            if let Some(v) = s.virtual_hosted_style {
                put("aws_virtual_hosted_style_request", v.to_string());
            }
        }
        "azblob" => {
            if let Some(v) = &s.endpoint {
                put("azure_storage_endpoint", v.clone());
            }
            if let Some(v) = &s.account {
                put("azure_storage_account_name", v.clone());
            }
            if let Some(v) = &s.account_key {
                put("azure_storage_account_key", secret("account_key", v)?);
            }
            if let Some(v) = &s.sas_token {
                put("azure_storage_sas_key", secret("sas_token", v)?);
            }
        }
        "gs" => {
            if let Some(v) = &s.service_account_key {
                put(
                    "google_service_account_key",
                    secret("service_account_key", v)?,
                );
            }
        }
        _ => {}
    }
    if scheme != "file" && s.allows_http() {
        put("allow_http", "true".into());
    }
    Ok(out)
}

/// `a` as one POSIX shell word.
fn shell_word(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,%".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}
