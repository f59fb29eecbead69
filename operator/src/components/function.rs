//! The processor Lambda function (provided.al2023, handler `bootstrap`), its
//! log group with a retention, and its asynchronous invoke configuration.
//!
//! Lambda rejects an update while the previous one is still applying
//! (`LastUpdateStatus: InProgress`, `ResourceConflictException`), so one pass
//! makes at most one code or configuration update and reports `Progressing`;
//! the next pass continues once the function is `Successful` again — no
//! sleeping in the worker. While Lambda is busy (`Pending`, `InProgress`)
//! nothing at all is written; a `ResourceConflictException` that still
//! happens (someone else updating) is a retryable error.
//!
//! The role's ARN comes from the role component ([`Ctx::inputs`]); a role just
//! created is not usable by Lambda for a few seconds (IAM propagation), which
//! `CreateFunction` reports as an invalid parameter: that is a retryable
//! `RoleNotAssumableYet` error, not a rejection.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, DestinationConfig, Environment, FunctionCode, OnFailure, Runtime,
};
use base64::Engine;
use sha2::{Digest, Sha256};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Output, Progress, Updated, code_of,
    extra_tag_keys, is_ours, missing_tags, owner_from_tags, tag_change,
};
use crate::error::{Error, ErrorClass, Result};
use crate::naming::Ownership;

/// The kind of resource, as errors and events name it.
const KIND: &str = "Lambda function";

/// Where the function code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSource {
    /// A `bootstrap.zip` shipped with the operator (`--processor-artifact-dir`).
    Zip { path: PathBuf },
    /// A zip in S3 (`spec.processor.code.s3`); `sha256` (base64) enables drift detection.
    S3 {
        bucket: String,
        key: String,
        sha256: Option<String>,
    },
}

/// What the function should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFunction {
    /// Function name.
    pub name: String,
    /// The ARN the function gets (its id before it is observed).
    pub arn: String,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    /// Memory, MB.
    pub memory_mb: i32,
    /// Timeout, seconds.
    pub timeout_seconds: i32,
    /// Environment variables (bucket and table names …).
    pub environment: BTreeMap<String, String>,
    /// Ownership and user tags (also put on the log group when it is created).
    pub tags: BTreeMap<String, String>,
    /// Function description.
    pub description: String,
    /// Where the code comes from.
    pub code: CodeSource,
    /// Log group retention in days.
    pub log_retention_days: i32,
    /// Retries of failed asynchronous (S3) invocations, 0–2.
    pub max_retry_attempts: i32,
    /// Maximum age of an asynchronous event, seconds.
    pub max_event_age_seconds: i32,
    /// Reserved concurrent executions; `None`: unreserved (the account's pool).
    pub reserved_concurrency: Option<i32>,
    /// ARN of the on-failure destination of asynchronous invocations (the
    /// failed-event queue); `None`: none.
    pub on_failure_destination: Option<String>,
}

/// Runtime of every processor function.
pub const RUNTIME: &str = "provided.al2023";
/// Handler of every processor function.
pub const HANDLER: &str = "bootstrap";

/// What the function looks like on AWS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedFunction {
    /// Function ARN.
    pub arn: String,
    /// Execution role ARN.
    pub role_arn: String,
    /// Runtime identifier.
    pub runtime: String,
    /// Handler.
    pub handler: String,
    /// First (only) architecture.
    pub architecture: String,
    /// Memory, MB.
    pub memory_mb: i32,
    /// Timeout, seconds.
    pub timeout_seconds: i32,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Description.
    pub description: String,
    /// `CodeSha256` of the deployed zip (base64).
    pub code_sha256: String,
    /// `Pending`, `Active`, `Failed`, …
    pub state: String,
    /// `InProgress`, `Successful`, `Failed`, or empty.
    pub last_update_status: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// (max retries, max event age, on-failure destination) of the async
    /// invoke config, when set.
    pub invoke_config: Option<(Option<i32>, Option<i32>, Option<String>)>,
    /// Retention of the log group; `None` when the group does not exist, `Some(None)` never expires.
    pub log_retention: Option<Option<i32>>,
    /// Reserved concurrent executions (`GetFunction`'s `Concurrency`); `None`: unreserved.
    pub reserved_concurrency: Option<i32>,
}

/// A field of the function that can differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Ownership and user tags.
    Tags,
    /// The log group (missing, or another retention).
    LogGroup,
    /// Reserved concurrency (`PutFunctionConcurrency` / `DeleteFunctionConcurrency`).
    Concurrency,
    /// Code or architecture (`UpdateFunctionCode`).
    Code,
    /// Role, runtime, handler, memory, timeout, description, environment.
    Configuration,
    /// The asynchronous invoke configuration.
    InvokeConfig,
}

/// The zip's SHA-256, base64 (what Lambda reports as `CodeSha256`).
pub fn code_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// A hex SHA-256 (as users may write it in the spec) as base64.
pub fn normalize_sha256(s: &str) -> String {
    if s.len() == 64
        && let Ok(bytes) = hex::decode(s)
    {
        return base64::engine::general_purpose::STANDARD.encode(bytes);
    }
    s.to_string()
}

/// Hashes of artifact zips by path, with the size and modification time they
/// were computed for: a steady-state reconcile does not read the zip again.
type HashCache = HashMap<PathBuf, (u64, Option<SystemTime>, String)>;
static ZIP_HASHES: LazyLock<Mutex<HashCache>> = LazyLock::new(Default::default);

fn unreadable(path: &Path, e: std::io::Error) -> Error {
    Error::Config(format!(
        "processor artifact {} cannot be read ({e}); build it with processor/scripts/build-artifact.sh \
         (or scripts/dev-artifacts.sh) or set --processor-artifact-dir / spec.processor.code.s3",
        path.display()
    ))
}

fn read_zip(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| unreadable(path, e))
}

/// The `CodeSha256` the function should have: the zip's (hashed once per
/// file version) or the one given with S3 code (`None` when not given).
pub fn expected_sha256(code: &CodeSource) -> Result<Option<String>> {
    match code {
        CodeSource::Zip { path } => {
            let meta = std::fs::metadata(path).map_err(|e| unreadable(path, e))?;
            let version = (meta.len(), meta.modified().ok());
            if let Ok(cache) = ZIP_HASHES.lock()
                && let Some((len, modified, sha)) = cache.get(path)
                && (*len, *modified) == version
            {
                return Ok(Some(sha.clone()));
            }
            let sha = code_sha256(&read_zip(path)?);
            if let Ok(mut cache) = ZIP_HASHES.lock() {
                cache.insert(path.clone(), (version.0, version.1, sha.clone()));
            }
            Ok(Some(sha))
        }
        CodeSource::S3 { sha256, .. } => Ok(sha256.as_deref().map(normalize_sha256)),
    }
}

/// The zip's bytes, read when code is uploaded (`None` for S3 code).
fn code_bytes(code: &CodeSource) -> Result<Option<Vec<u8>>> {
    match code {
        CodeSource::Zip { path } => read_zip(path).map(Some),
        CodeSource::S3 { .. } => Ok(None),
    }
}

fn config_differences(d: &DesiredFunction, role_arn: &str, o: &ObservedFunction) -> Vec<String> {
    let mut out = Vec::new();
    if o.role_arn != role_arn {
        out.push(format!("role: {} → {role_arn}", o.role_arn));
    }
    if o.runtime != RUNTIME {
        out.push(format!("runtime: {} → {RUNTIME}", o.runtime));
    }
    if o.handler != HANDLER {
        out.push(format!("handler: {} → {HANDLER}", o.handler));
    }
    if o.memory_mb != d.memory_mb {
        out.push(format!("memoryMb: {} → {}", o.memory_mb, d.memory_mb));
    }
    if o.timeout_seconds != d.timeout_seconds {
        out.push(format!(
            "timeoutSeconds: {} → {}",
            o.timeout_seconds, d.timeout_seconds
        ));
    }
    if o.description != d.description {
        out.push("description".to_string());
    }
    if o.environment != d.environment {
        let mut keys: Vec<&String> = d
            .environment
            .iter()
            .filter(|(k, v)| o.environment.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        keys.extend(
            o.environment
                .keys()
                .filter(|k| !d.environment.contains_key(*k)),
        );
        keys.sort();
        keys.dedup();
        out.push(format!(
            "environment[{}]",
            keys.iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    out
}

/// Every difference. `role_arn` is the role's (from the role component),
/// `code_sha256` the desired code hash when known.
pub fn diff(
    d: &DesiredFunction,
    role_arn: &str,
    o: &ObservedFunction,
    code_sha256: Option<&str>,
) -> Vec<(Field, Change)> {
    let mut out = Vec::new();
    if let Some(c) = tag_change(&d.tags, &o.tags) {
        out.push((Field::Tags, c));
    }
    if o.log_retention != Some(Some(d.log_retention_days)) {
        let from = match o.log_retention {
            None => "missing".to_string(),
            Some(None) => "never expire".to_string(),
            Some(Some(n)) => format!("{n} days"),
        };
        out.push((
            Field::LogGroup,
            Change::new(
                "logGroupRetention",
                from,
                format!("{} days", d.log_retention_days),
            ),
        ));
    }
    if o.reserved_concurrency != d.reserved_concurrency {
        let show = |c: Option<i32>| c.map_or_else(|| "unreserved".to_string(), |n| n.to_string());
        out.push((
            Field::Concurrency,
            Change::new(
                "reservedConcurrency",
                show(o.reserved_concurrency),
                show(d.reserved_concurrency),
            ),
        ));
    }
    let code_differs = code_sha256.is_some_and(|s| s != o.code_sha256);
    if code_differs || o.architecture != d.architecture {
        out.push((
            Field::Code,
            Change::new(
                "code",
                format!("{} {}", o.architecture, short(&o.code_sha256)),
                format!(
                    "{} {}",
                    d.architecture,
                    short(code_sha256.unwrap_or(&o.code_sha256))
                ),
            ),
        ));
    }
    let cfg = config_differences(d, role_arn, o);
    if !cfg.is_empty() {
        out.push((
            Field::Configuration,
            Change::new("configuration", cfg.join(", "), "as spec"),
        ));
    }
    let want_invoke = (
        Some(d.max_retry_attempts),
        Some(d.max_event_age_seconds),
        d.on_failure_destination.clone(),
    );
    if o.invoke_config.as_ref() != Some(&want_invoke) {
        out.push((
            Field::InvokeConfig,
            Change::new(
                "asyncInvokeConfig",
                format!("{:?}", o.invoke_config),
                format!(
                    "retries={} maxAge={}s onFailure={}",
                    d.max_retry_attempts,
                    d.max_event_age_seconds,
                    d.on_failure_destination.as_deref().unwrap_or("none")
                ),
            ),
        ));
    }
    out
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn log_group(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// Read the function; `None` when it does not exist. Stops after the
/// function itself when it is not this stack's.
pub async fn observe(ctx: &Ctx<'_>, name: &str) -> Result<Option<ObservedFunction>> {
    let lambda = &ctx.aws.lambda;
    let out = match lambda.get_function().function_name(name).send().await {
        Ok(o) => o,
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(Error::aws("lambda:GetFunction", e)),
    };
    let Some(c) = out.configuration() else {
        return Ok(None);
    };
    let mut o = ObservedFunction {
        arn: c.function_arn().unwrap_or_default().to_string(),
        role_arn: c.role().unwrap_or_default().to_string(),
        runtime: c
            .runtime()
            .map(|r| r.as_str().to_string())
            .unwrap_or_default(),
        handler: c.handler().unwrap_or_default().to_string(),
        architecture: c
            .architectures()
            .first()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| "x86_64".into()),
        memory_mb: c.memory_size().unwrap_or_default(),
        timeout_seconds: c.timeout().unwrap_or_default(),
        environment: c
            .environment()
            .and_then(|e| e.variables())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        description: c.description().unwrap_or_default().to_string(),
        code_sha256: c.code_sha256().unwrap_or_default().to_string(),
        state: c
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        last_update_status: c
            .last_update_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        tags: out
            .tags()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        reserved_concurrency: out
            .concurrency()
            .and_then(|c| c.reserved_concurrent_executions()),
        ..Default::default()
    };
    if !is_ours(ctx, &o.tags) {
        return Ok(Some(o));
    }
    o.invoke_config = match lambda
        .get_function_event_invoke_config()
        .function_name(name)
        .send()
        .await
    {
        Ok(c) => Some((
            c.maximum_retry_attempts(),
            c.maximum_event_age_in_seconds(),
            c.destination_config()
                .and_then(|d| d.on_failure())
                .and_then(|f| f.destination())
                .filter(|d| !d.is_empty())
                .map(str::to_string),
        )),
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => None,
        Err(e) => return Err(Error::aws("lambda:GetFunctionEventInvokeConfig", e)),
    };
    o.log_retention = log_group_retention(ctx, &log_group(name)).await?;
    Ok(Some(o))
}

/// The log group's retention: `None` when the group does not exist,
/// `Some(None)` when it never expires.
async fn log_group_retention(ctx: &Ctx<'_>, group: &str) -> Result<Option<Option<i32>>> {
    let groups = ctx
        .aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .map_err(|e| Error::aws("logs:DescribeLogGroups", e))?;
    Ok(groups
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group))
        .map(|g| g.retention_in_days()))
}

const ACTION_INVOKE_CONFIG: &str = "lambda:PutFunctionEventInvokeConfig";

/// Lambda checks that the execution role may send to the on-failure
/// destination; right after the role's policy got `sqs:SendMessage` (IAM is
/// eventually consistent) it answers `InvalidParameterValueException` "…
/// execution role does not have permissions to call SendMessage …": retry,
/// do not stall.
pub fn destination_error(code: Option<&str>, err: Error) -> Error {
    match err {
        Error::Aws { message, .. }
            if code == Some("InvalidParameterValueException")
                && message.contains("does not have permissions") =>
        {
            Error::Aws {
                action: ACTION_INVOKE_CONFIG.into(),
                code: "DestinationPermissionNotVisibleYet".into(),
                message: format!(
                    "the role's permission on the failed-event queue is not yet visible to Lambda (IAM is eventually consistent); retrying. {message}"
                ),
                class: ErrorClass::Retryable,
            }
        }
        other => other,
    }
}

/// True for the error Lambda returns while a just-created role is not yet
/// visible to it (IAM eventual consistency, ~10 s).
pub fn is_role_not_ready(code: Option<&str>, message: &str) -> bool {
    code == Some("InvalidParameterValueException")
        && (message.contains("cannot be assumed")
            || message.contains("role defined for the function"))
}

fn architecture(s: &str) -> Architecture {
    Architecture::from(s)
}

fn code_of_source(code: &CodeSource, bytes: Option<Vec<u8>>) -> FunctionCode {
    match code {
        CodeSource::Zip { .. } => FunctionCode::builder()
            .set_zip_file(bytes.map(Blob::new))
            .build(),
        CodeSource::S3 { bucket, key, .. } => FunctionCode::builder()
            .s3_bucket(bucket)
            .s3_key(key)
            .build(),
    }
}

/// The role's ARN, handed over by the role component in this pass.
fn role_arn<'a>(cx: &'a Ctx<'_>) -> Result<&'a str> {
    cx.inputs.role_arn.as_deref().ok_or_else(|| {
        Error::Internal(
            "the processor role's ARN is not known in this pass although the graph orders the role first"
                .into(),
        )
    })
}

/// A code or configuration update refused because another one is still
/// applying: retryable, and the message says so.
fn update_error<E>(action: &str, name: &str, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let busy = code_of(&e) == Some("ResourceConflictException");
    let err = Error::aws(action, e);
    match err {
        Error::Aws { code, message, .. } if busy => Error::Aws {
            action: action.into(),
            code,
            message: format!("function {name} is busy with a previous update; retrying. {message}"),
            class: ErrorClass::Retryable,
        },
        other => other,
    }
}

fn environment(d: &DesiredFunction) -> Environment {
    Environment::builder()
        .set_variables(Some(d.environment.clone().into_iter().collect()))
        .build()
}

impl Component for DesiredFunction {
    type Observed = ObservedFunction;

    fn name(&self) -> ComponentName {
        ComponentName::ProcessorFunction
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    fn id(&self) -> String {
        self.arn.clone()
    }
    fn observed_id(&self, seen: &ObservedFunction) -> Option<String> {
        (!seen.arn.is_empty()).then(|| seen.arn.clone())
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedFunction>> {
        observe(cx, &self.name).await
    }

    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedFunction) -> Ownership {
        owner_from_tags(cx, &seen.tags)
    }

    fn wait(&self, seen: &ObservedFunction) -> Option<Progress> {
        (seen.state == "Pending" || seen.last_update_status == "InProgress").then(|| {
            Progress::new(
                "FunctionUpdating",
                format!(
                    "function {} is {} / {}; waiting for Lambda to finish before writing",
                    self.name, seen.state, seen.last_update_status
                ),
            )
        })
    }

    fn diff(&self, cx: &Ctx<'_>, seen: &ObservedFunction) -> Result<Vec<Change>> {
        let sha = expected_sha256(&self.code)?;
        Ok(diff(self, role_arn(cx)?, seen, sha.as_deref())
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        let role = role_arn(cx)?;
        let bytes = code_bytes(&self.code)?;
        // Read first: the create path runs again after a crash between the log
        // group and the function, and must not repeat writes already made.
        let current = log_group_retention(cx, &log_group(&self.name)).await?;
        ensure_log_group(cx, self, current).await?;
        let res = cx
            .aws
            .lambda
            .create_function()
            .function_name(&self.name)
            .runtime(Runtime::from(RUNTIME))
            .handler(HANDLER)
            .role(role)
            .architectures(architecture(&self.architecture))
            .memory_size(self.memory_mb)
            .timeout(self.timeout_seconds)
            .description(&self.description)
            .environment(environment(self))
            .code(code_of_source(&self.code, bytes))
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .send()
            .await;
        match res {
            Ok(_) => {}
            // Created by an interrupted earlier pass (or concurrently).
            Err(e) if code_of(&e) == Some("ResourceConflictException") => {}
            Err(e) => {
                let code = code_of(&e).map(str::to_string);
                let err = Error::aws("lambda:CreateFunction", e);
                let message = match &err {
                    Error::Aws { message, .. } => message.clone(),
                    _ => String::new(),
                };
                if is_role_not_ready(code.as_deref(), &message) {
                    return Err(Error::Aws {
                        action: "lambda:CreateFunction".into(),
                        code: "RoleNotAssumableYet".into(),
                        message: format!(
                            "the new IAM role is not yet usable by Lambda (IAM is eventually consistent); retrying. {message}"
                        ),
                        class: ErrorClass::Retryable,
                    });
                }
                return Err(err);
            }
        }
        Ok(Created::progressing(
            "FunctionCreating",
            format!("function {} is being created", self.name),
        ))
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedFunction,
        changes: &[Change],
    ) -> Result<Updated> {
        let sha = expected_sha256(&self.code)?;
        let role = role_arn(cx)?;
        let lambda = &cx.aws.lambda;
        let mut applied = Vec::new();
        for (field, change) in diff(self, role, seen, sha.as_deref()) {
            if !changes.contains(&change) {
                continue;
            }
            match field {
                Field::Tags => apply_tags(cx, self, seen).await?,
                Field::LogGroup => ensure_log_group(cx, self, seen.log_retention).await?,
                Field::Concurrency => match self.reserved_concurrency {
                    Some(n) => {
                        lambda
                            .put_function_concurrency()
                            .function_name(&self.name)
                            .reserved_concurrent_executions(n)
                            .send()
                            .await
                            .map_err(|e| Error::aws("lambda:PutFunctionConcurrency", e))?;
                    }
                    None => {
                        lambda
                            .delete_function_concurrency()
                            .function_name(&self.name)
                            .send()
                            .await
                            .map_err(|e| Error::aws("lambda:DeleteFunctionConcurrency", e))?;
                    }
                },
                Field::InvokeConfig => {
                    // Put replaces the whole configuration: no destination
                    // unless the spec has one.
                    let destination = DestinationConfig::builder()
                        .set_on_failure(
                            self.on_failure_destination
                                .as_ref()
                                .map(|d| OnFailure::builder().destination(d).build()),
                        )
                        .build();
                    lambda
                        .put_function_event_invoke_config()
                        .function_name(&self.name)
                        .maximum_retry_attempts(self.max_retry_attempts)
                        .maximum_event_age_in_seconds(self.max_event_age_seconds)
                        .destination_config(destination)
                        .send()
                        .await
                        .map_err(|e| {
                            let code = code_of(&e).map(str::to_string);
                            destination_error(code.as_deref(), Error::aws(ACTION_INVOKE_CONFIG, e))
                        })?;
                }
                // One code or configuration update per pass: Lambda applies it
                // (LastUpdateStatus InProgress) before it accepts another.
                Field::Code => {
                    let (bucket, key) = match &self.code {
                        CodeSource::S3 { bucket, key, .. } => {
                            (Some(bucket.clone()), Some(key.clone()))
                        }
                        CodeSource::Zip { .. } => (None, None),
                    };
                    lambda
                        .update_function_code()
                        .function_name(&self.name)
                        .set_zip_file(code_bytes(&self.code)?.map(Blob::new))
                        .set_s3_bucket(bucket)
                        .set_s3_key(key)
                        .architectures(architecture(&self.architecture))
                        .send()
                        .await
                        .map_err(|e| update_error("lambda:UpdateFunctionCode", &self.name, e))?;
                    applied.push(change);
                    return Ok(Updated::all(&applied).progressing(
                        "FunctionUpdating",
                        format!("code of {} is updating", self.name),
                    ));
                }
                Field::Configuration => {
                    lambda
                        .update_function_configuration()
                        .function_name(&self.name)
                        .role(role)
                        .runtime(Runtime::from(RUNTIME))
                        .handler(HANDLER)
                        .memory_size(self.memory_mb)
                        .timeout(self.timeout_seconds)
                        .description(&self.description)
                        .environment(environment(self))
                        .send()
                        .await
                        .map_err(|e| {
                            update_error("lambda:UpdateFunctionConfiguration", &self.name, e)
                        })?;
                    applied.push(change);
                    return Ok(Updated::all(&applied).progressing(
                        "FunctionUpdating",
                        format!("configuration of {} is updating", self.name),
                    ));
                }
            }
            applied.push(change);
        }
        Ok(Updated::all(&applied))
    }

    fn settling(&self, seen: &ObservedFunction) -> Option<Progress> {
        (seen.state == "Failed" || seen.last_update_status == "Failed").then(|| {
            Progress::new(
                "FunctionFailed",
                format!(
                    "function {} state {} last update {}",
                    self.name, seen.state, seen.last_update_status
                ),
            )
        })
    }

    fn outputs(&self, _cx: &Ctx<'_>, seen: &ObservedFunction) -> Vec<Output> {
        let arn = if seen.arn.is_empty() {
            &self.arn
        } else {
            &seen.arn
        };
        vec![Output::FunctionArn(arn.clone())]
    }

    /// The function, then its log group.
    async fn delete(&self, cx: &Ctx<'_>, _seen: &ObservedFunction) -> Result<Deletion> {
        match cx
            .aws
            .lambda
            .delete_function()
            .function_name(&self.name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if code_of(&e) == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(Error::aws("lambda:DeleteFunction", e)),
        }
        match cx
            .aws
            .logs
            .delete_log_group()
            .log_group_name(log_group(&self.name))
            .send()
            .await
        {
            Ok(_) => Ok(Deletion::Gone),
            Err(e) if code_of(&e) == Some("ResourceNotFoundException") => Ok(Deletion::Gone),
            Err(e) => Err(Error::aws("logs:DeleteLogGroup", e)),
        }
    }
}

/// Create the log group when missing and set its retention when it differs,
/// given what was observed (`current`, as [`log_group_retention`] returns it).
async fn ensure_log_group(
    ctx: &Ctx<'_>,
    d: &DesiredFunction,
    current: Option<Option<i32>>,
) -> Result<()> {
    let group = log_group(&d.name);
    let logs = &ctx.aws.logs;
    if current.is_none() {
        match logs
            .create_log_group()
            .log_group_name(&group)
            .set_tags(Some(d.tags.clone().into_iter().collect()))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if code_of(&e) == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(Error::aws("logs:CreateLogGroup", e)),
        }
    }
    if current.flatten() != Some(d.log_retention_days) {
        logs.put_retention_policy()
            .log_group_name(&group)
            .retention_in_days(d.log_retention_days)
            .send()
            .await
            .map_err(|e| Error::aws("logs:PutRetentionPolicy", e))?;
    }
    Ok(())
}

async fn apply_tags(ctx: &Ctx<'_>, d: &DesiredFunction, o: &ObservedFunction) -> Result<()> {
    let lambda = &ctx.aws.lambda;
    let extra = extra_tag_keys(&d.tags, &o.tags);
    if !extra.is_empty() {
        lambda
            .untag_resource()
            .resource(&o.arn)
            .set_tag_keys(Some(extra))
            .send()
            .await
            .map_err(|e| Error::aws("lambda:UntagResource", e))?;
    }
    let missing: std::collections::HashMap<String, String> = missing_tags(&d.tags, &o.tags);
    if !missing.is_empty() {
        lambda
            .tag_resource()
            .resource(&o.arn)
            .set_tags(Some(missing))
            .send()
            .await
            .map_err(|e| Error::aws("lambda:TagResource", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::1:role/r";

    fn desired() -> DesiredFunction {
        DesiredFunction {
            name: "f".into(),
            arn: "arn:aws:lambda:us-east-1:1:function:f".into(),
            architecture: "x86_64".into(),
            memory_mb: 1024,
            timeout_seconds: 300,
            environment: BTreeMap::from([("A".to_string(), "1".to_string())]),
            tags: BTreeMap::from([("k".to_string(), "v".to_string())]),
            description: "d".into(),
            code: CodeSource::Zip {
                path: "x.zip".into(),
            },
            log_retention_days: 30,
            max_retry_attempts: 2,
            max_event_age_seconds: 3600,
            reserved_concurrency: Some(5),
            on_failure_destination: Some("arn:aws:sqs:us-east-1:1:q".into()),
        }
    }

    fn in_sync(d: &DesiredFunction) -> ObservedFunction {
        ObservedFunction {
            arn: d.arn.clone(),
            role_arn: ROLE.into(),
            runtime: RUNTIME.into(),
            handler: HANDLER.into(),
            architecture: d.architecture.clone(),
            memory_mb: d.memory_mb,
            timeout_seconds: d.timeout_seconds,
            environment: d.environment.clone(),
            description: d.description.clone(),
            code_sha256: "abc".into(),
            state: "Active".into(),
            last_update_status: "Successful".into(),
            tags: d.tags.clone(),
            invoke_config: Some((Some(2), Some(3600), d.on_failure_destination.clone())),
            log_retention: Some(Some(30)),
            reserved_concurrency: d.reserved_concurrency,
        }
    }

    #[test]
    fn in_sync_no_diff() {
        let d = desired();
        assert!(diff(&d, ROLE, &in_sync(&d), Some("abc")).is_empty());
        // Unknown desired hash (S3 code without sha256): code is not compared.
        assert!(diff(&d, ROLE, &in_sync(&d), None).is_empty());
    }

    #[test]
    fn drift_named() {
        let d = desired();
        let mut o = in_sync(&d);
        o.memory_mb = 512;
        o.environment.insert("A".into(), "2".into());
        o.code_sha256 = "old".into();
        o.log_retention = Some(None);
        o.reserved_concurrency = None;
        let ch = diff(&d, ROLE, &o, Some("abc"));
        let fields: Vec<Field> = ch.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            vec![
                Field::LogGroup,
                Field::Concurrency,
                Field::Code,
                Field::Configuration
            ]
        );
        assert_eq!(ch[1].1.to_string(), "reservedConcurrency: unreserved → 5");
        let cfg = &ch[3].1;
        assert!(cfg.from.contains("memoryMb: 512 → 1024"), "{cfg}");
        assert!(cfg.from.contains("environment[A]"), "{cfg}");
    }

    #[test]
    fn reserved_concurrency_zero_and_unreserved_differ() {
        let mut d = desired();
        d.reserved_concurrency = Some(0);
        let mut o = in_sync(&d);
        assert!(diff(&d, ROLE, &o, Some("abc")).is_empty());
        o.reserved_concurrency = None;
        let ch = diff(&d, ROLE, &o, Some("abc"));
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].1.to_string(), "reservedConcurrency: unreserved → 0");
        // Unset in the spec: a reservation made out of band is removed.
        d.reserved_concurrency = None;
        o.reserved_concurrency = Some(10);
        let ch = diff(&d, ROLE, &o, Some("abc"));
        assert_eq!(ch[0].1.to_string(), "reservedConcurrency: 10 → unreserved");
    }

    #[test]
    fn architecture_change_is_a_code_update() {
        let mut d = desired();
        d.architecture = "arm64".into();
        let ch = diff(&d, ROLE, &in_sync(&desired()), Some("abc"));
        assert_eq!(ch[0].0, Field::Code);
    }

    #[test]
    fn sha256_forms() {
        let b64 = code_sha256(b"hello");
        assert_eq!(b64, "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
        let hexd = hex::encode(Sha256::digest(b"hello"));
        assert_eq!(normalize_sha256(&hexd), b64);
        assert_eq!(normalize_sha256(&b64), b64);
    }

    #[test]
    fn role_propagation_error_recognised() {
        assert!(is_role_not_ready(
            Some("InvalidParameterValueException"),
            "The role defined for the function cannot be assumed by Lambda."
        ));
        assert!(!is_role_not_ready(
            Some("InvalidParameterValueException"),
            "Unsupported runtime"
        ));
    }

    #[test]
    fn role_comes_from_the_role_component() {
        let d = desired();
        let ch = diff(&d, "arn:aws:iam::1:role/other", &in_sync(&d), Some("abc"));
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].0, Field::Configuration);
        assert!(ch[0].1.from.contains("role: "), "{}", ch[0].1);
    }

    #[test]
    fn busy_waits_and_failed_settles() {
        let d = desired();
        let mut o = in_sync(&d);
        assert_eq!(d.wait(&o), None);
        assert_eq!(d.settling(&o), None);
        o.last_update_status = "InProgress".into();
        assert_eq!(d.wait(&o).unwrap().reason, "FunctionUpdating");
        o.last_update_status = "Successful".into();
        o.state = "Pending".into();
        assert_eq!(d.wait(&o).unwrap().reason, "FunctionUpdating");
        o.state = "Failed".into();
        assert_eq!(d.wait(&o), None);
        assert_eq!(d.settling(&o).unwrap().reason, "FunctionFailed");
    }
}
