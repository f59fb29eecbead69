//! The processor Lambda function (provided.al2023, handler `bootstrap`), its
//! log group with a retention, and its asynchronous invoke configuration.
//!
//! Lambda rejects an update while the previous one is still applying
//! (`LastUpdateStatus: InProgress`, `ResourceConflictException`), so one pass
//! makes at most one code or configuration update and reports `Progressing`;
//! the next pass continues once the function is `Successful` again — no
//! sleeping in the worker.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{
    Change, Ctx, Deletion, Report, State, check_owner, code_of, extra_tag_keys, is_ours,
    missing_tags, tag_change,
};
use crate::error::{Error, ErrorClass, Result};

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
    pub name: String,
    pub arn: String,
    pub role_arn: String,
    pub architecture: String,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub environment: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub description: String,
    pub code: CodeSource,
    /// Log group retention in days.
    pub log_retention_days: i32,
    /// Retries of failed asynchronous (S3) invocations, 0–2.
    pub max_retry_attempts: i32,
    /// Maximum age of an asynchronous event, seconds.
    pub max_event_age_seconds: i32,
}

/// Runtime and handler of every processor function.
pub const RUNTIME: &str = "provided.al2023";
pub const HANDLER: &str = "bootstrap";

/// What the function looks like on AWS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedFunction {
    pub arn: String,
    pub role_arn: String,
    pub runtime: String,
    pub handler: String,
    pub architecture: String,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub environment: BTreeMap<String, String>,
    pub description: String,
    pub code_sha256: String,
    /// `Pending`, `Active`, `Failed`, …
    pub state: String,
    /// `InProgress`, `Successful`, `Failed`, or empty.
    pub last_update_status: String,
    pub tags: BTreeMap<String, String>,
    /// (max retries, max event age) of the async invoke config, when set.
    pub invoke_config: Option<(Option<i32>, Option<i32>)>,
    /// Retention of the log group; `None` when the group does not exist, `Some(None)` never expires.
    pub log_retention: Option<Option<i32>>,
}

/// A field of the function that can differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Tags,
    LogGroup,
    Code,
    Configuration,
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

fn config_differences(d: &DesiredFunction, o: &ObservedFunction) -> Vec<String> {
    let mut out = Vec::new();
    if o.role_arn != d.role_arn {
        out.push(format!("role: {} → {}", o.role_arn, d.role_arn));
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

/// Every difference. `code_sha256` is the desired code hash when known.
pub fn diff(
    d: &DesiredFunction,
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
    let cfg = config_differences(d, o);
    if !cfg.is_empty() {
        out.push((
            Field::Configuration,
            Change::new("configuration", cfg.join(", "), "as spec"),
        ));
    }
    let want_invoke = (Some(d.max_retry_attempts), Some(d.max_event_age_seconds));
    if o.invoke_config != Some(want_invoke) {
        out.push((
            Field::InvokeConfig,
            Change::new(
                "asyncInvokeConfig",
                format!("{:?}", o.invoke_config),
                format!(
                    "retries={} maxAge={}s",
                    d.max_retry_attempts, d.max_event_age_seconds
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

/// Read the function; `None` when it does not exist.
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
        Ok(c) => Some((c.maximum_retry_attempts(), c.maximum_event_age_in_seconds())),
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

fn progressing(reason: &str, message: impl Into<String>) -> State {
    State::Progressing {
        reason: reason.into(),
        message: message.into(),
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

/// Create the function if missing; otherwise repair what differs, one Lambda update per pass.
pub async fn reconcile(ctx: &Ctx<'_>, d: &DesiredFunction) -> Result<Report> {
    let mut report = Report::ready("processor-function", d.arn.clone());
    let expected_sha = expected_sha256(&d.code)?;
    let Some(o) = observe(ctx, &d.name).await? else {
        if ctx.dry_run {
            report.state = State::Paused {
                message: "function does not exist; creation paused".into(),
            };
            return Ok(report);
        }
        create(ctx, d, code_bytes(&d.code)?).await?;
        report.created = true;
        report.state = progressing(
            "FunctionCreating",
            format!("function {} is being created", d.name),
        );
        return Ok(report);
    };
    report.id = o.arn.clone();
    check_owner(ctx, KIND, &d.name, &o.tags)?;
    let changes = diff(d, &o, expected_sha.as_deref());
    let busy = o.state == "Pending" || o.last_update_status == "InProgress";
    if changes.is_empty() {
        if busy {
            report.state = progressing(
                "FunctionUpdating",
                format!(
                    "function {} is {} / {}",
                    d.name, o.state, o.last_update_status
                ),
            );
        } else if o.state == "Failed" || o.last_update_status == "Failed" {
            report.state = progressing(
                "FunctionFailed",
                format!(
                    "function {} state {} last update {}",
                    d.name, o.state, o.last_update_status
                ),
            );
        }
        return Ok(report);
    }
    if ctx.dry_run {
        report.state = State::Paused {
            message: super::describe(&changes.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()),
        };
        return Ok(report);
    }
    for (field, change) in changes {
        match field {
            Field::Code | Field::Configuration if busy => {
                report.state = progressing(
                    "FunctionUpdating",
                    format!(
                        "waiting for the previous update of {} to finish before {}",
                        d.name, change.field
                    ),
                );
                break;
            }
            Field::Code => {
                ctx.aws
                    .lambda
                    .update_function_code()
                    .function_name(&d.name)
                    .set_zip_file(code_bytes(&d.code)?.map(Blob::new))
                    .set_s3_bucket(match &d.code {
                        CodeSource::S3 { bucket, .. } => Some(bucket.clone()),
                        CodeSource::Zip { .. } => None,
                    })
                    .set_s3_key(match &d.code {
                        CodeSource::S3 { key, .. } => Some(key.clone()),
                        CodeSource::Zip { .. } => None,
                    })
                    .architectures(architecture(&d.architecture))
                    .send()
                    .await
                    .map_err(|e| Error::aws("lambda:UpdateFunctionCode", e))?;
                report.changes.push(change);
                report.state = progressing(
                    "FunctionUpdating",
                    format!("code of {} is updating", d.name),
                );
                break;
            }
            Field::Configuration => {
                ctx.aws
                    .lambda
                    .update_function_configuration()
                    .function_name(&d.name)
                    .role(&d.role_arn)
                    .runtime(Runtime::from(RUNTIME))
                    .handler(HANDLER)
                    .memory_size(d.memory_mb)
                    .timeout(d.timeout_seconds)
                    .description(&d.description)
                    .environment(
                        Environment::builder()
                            .set_variables(Some(d.environment.clone().into_iter().collect()))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| Error::aws("lambda:UpdateFunctionConfiguration", e))?;
                report.changes.push(change);
                report.state = progressing(
                    "FunctionUpdating",
                    format!("configuration of {} is updating", d.name),
                );
                break;
            }
            Field::Tags => {
                apply_tags(ctx, d, &o).await?;
                report.changes.push(change);
            }
            Field::LogGroup => {
                ensure_log_group(ctx, d, o.log_retention).await?;
                report.changes.push(change);
            }
            Field::InvokeConfig => {
                ctx.aws
                    .lambda
                    .put_function_event_invoke_config()
                    .function_name(&d.name)
                    .maximum_retry_attempts(d.max_retry_attempts)
                    .maximum_event_age_in_seconds(d.max_event_age_seconds)
                    .send()
                    .await
                    .map_err(|e| Error::aws("lambda:PutFunctionEventInvokeConfig", e))?;
                report.changes.push(change);
            }
        }
    }
    Ok(report)
}

async fn create(ctx: &Ctx<'_>, d: &DesiredFunction, bytes: Option<Vec<u8>>) -> Result<()> {
    // Read first: the create path runs again after a crash between the log group
    // and the function, and must not repeat writes already made.
    let current = log_group_retention(ctx, &log_group(&d.name)).await?;
    ensure_log_group(ctx, d, current).await?;
    let res = ctx
        .aws
        .lambda
        .create_function()
        .function_name(&d.name)
        .runtime(Runtime::from(RUNTIME))
        .handler(HANDLER)
        .role(&d.role_arn)
        .architectures(architecture(&d.architecture))
        .memory_size(d.memory_mb)
        .timeout(d.timeout_seconds)
        .description(&d.description)
        .environment(
            Environment::builder()
                .set_variables(Some(d.environment.clone().into_iter().collect()))
                .build(),
        )
        .code(code_of_source(&d.code, bytes))
        .set_tags(Some(d.tags.clone().into_iter().collect()))
        .send()
        .await;
    match res {
        Ok(_) => {
            tracing::info!(function = %d.name, "created Lambda function");
            Ok(())
        }
        Err(e) if code_of(&e) == Some("ResourceConflictException") => Ok(()),
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
                        "the new IAM role is not yet usable by Lambda (IAM is eventually consistent); retrying: {message}"
                    ),
                    class: ErrorClass::Retryable,
                });
            }
            Err(err)
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

/// Delete the function and its log group if ours.
pub async fn delete(ctx: &Ctx<'_>, d: &DesiredFunction) -> Result<Deletion> {
    let Some(o) = observe(ctx, &d.name).await? else {
        return Ok(Deletion::Gone);
    };
    if check_owner(ctx, KIND, &d.name, &o.tags).is_err() {
        tracing::warn!(function = %d.name, "not deleting function without this stack's ownership tag");
        return Ok(Deletion::Gone);
    }
    match ctx
        .aws
        .lambda
        .delete_function()
        .function_name(&d.name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => {}
        Err(e) => return Err(Error::aws("lambda:DeleteFunction", e)),
    }
    match ctx
        .aws
        .logs
        .delete_log_group()
        .log_group_name(log_group(&d.name))
        .send()
        .await
    {
        Ok(_) => Ok(Deletion::Gone),
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => Ok(Deletion::Gone),
        Err(e) => Err(Error::aws("logs:DeleteLogGroup", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredFunction {
        DesiredFunction {
            name: "f".into(),
            arn: "arn:aws:lambda:us-east-1:1:function:f".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
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
        }
    }

    fn in_sync(d: &DesiredFunction) -> ObservedFunction {
        ObservedFunction {
            arn: d.arn.clone(),
            role_arn: d.role_arn.clone(),
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
            invoke_config: Some((Some(2), Some(3600))),
            log_retention: Some(Some(30)),
        }
    }

    #[test]
    fn in_sync_no_diff() {
        let d = desired();
        assert!(diff(&d, &in_sync(&d), Some("abc")).is_empty());
        // Unknown desired hash (S3 code without sha256): code is not compared.
        assert!(diff(&d, &in_sync(&d), None).is_empty());
    }

    #[test]
    fn drift_named() {
        let d = desired();
        let mut o = in_sync(&d);
        o.memory_mb = 512;
        o.environment.insert("A".into(), "2".into());
        o.code_sha256 = "old".into();
        o.log_retention = Some(None);
        let ch = diff(&d, &o, Some("abc"));
        let fields: Vec<Field> = ch.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            vec![Field::LogGroup, Field::Code, Field::Configuration]
        );
        let cfg = &ch[2].1;
        assert!(cfg.from.contains("memoryMb: 512 → 1024"), "{cfg}");
        assert!(cfg.from.contains("environment[A]"), "{cfg}");
    }

    #[test]
    fn architecture_change_is_a_code_update() {
        let mut d = desired();
        d.architecture = "arm64".into();
        let ch = diff(&d, &in_sync(&desired()), Some("abc"));
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
}
