//! Pure planning: a stack's spec (plus where it runs) → the desired state of
//! every component. No I/O here, so all of it is unit-tested.

use std::collections::BTreeMap;

use imagestack_contract::Format;

use crate::api::CodeSpec;
use crate::api::{ImageOptimizationStack, ImageOptimizationStackSpec, StackOutputs};
use crate::aws::partition;
use crate::components::bucket::{Cors, DesiredBucket};
use crate::components::function::{CodeSource, DesiredFunction};
use crate::components::notification::DesiredNotification;
use crate::components::permission::DesiredPermission;
use crate::components::role::DesiredRole;
use crate::components::table::DesiredTable;
use crate::error::{Error, Result};
use crate::naming::{StackId, is_valid_bucket_name};
use crate::policy;

/// Where the stack runs: resolved from STS and the spec/operator region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEnv {
    pub account_id: String,
    pub region: String,
}

impl AwsEnv {
    pub fn partition(&self) -> &'static str {
        partition(&self.region)
    }
}

/// Operator-level inputs of the plan (from flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Directory with `x86_64.zip` and `arm64.zip` (`--processor-artifact-dir`).
    pub artifact_dir: std::path::PathBuf,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            artifact_dir: "/opt/imagestack/processor".into(),
        }
    }
}

/// Desired state of every component of one stack.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredStack {
    pub id: StackId,
    pub env: AwsEnv,
    /// Upload bucket first, then webp, jpeg, png.
    pub buckets: Vec<DesiredBucket>,
    pub table: DesiredTable,
    pub role: DesiredRole,
    pub function: DesiredFunction,
    pub permission: DesiredPermission,
    pub notification: DesiredNotification,
    pub empty_buckets_on_delete: bool,
}

impl DesiredStack {
    /// Names known from the plan alone (status outputs).
    pub fn outputs(&self) -> StackOutputs {
        let bucket = |c: &str| {
            self.buckets
                .iter()
                .find(|b| b.component == c)
                .map(|b| b.name.clone())
        };
        StackOutputs {
            region: Some(self.env.region.clone()),
            upload_bucket: bucket(UPLOAD),
            webp_bucket: bucket(&output_component(Format::Webp)),
            jpeg_bucket: bucket(&output_component(Format::Jpeg)),
            png_bucket: bucket(&output_component(Format::Png)),
            table_name: Some(self.table.name.clone()),
            role_arn: Some(self.role.arn.clone()),
            function_name: Some(self.function.name.clone()),
            function_arn: Some(self.function.arn.clone()),
            ..Default::default()
        }
    }

    /// Add the CloudFront read grant of `distribution_arn` to each output
    /// bucket's policy (next to the TLS-only statement).
    pub fn grant_cloudfront(&mut self, distribution_arn: &str) {
        let p = self.env.partition();
        for f in Format::ALL {
            let component = output_component(f);
            if let Some(b) = self.buckets.iter_mut().find(|b| b.component == component) {
                b.policy = policy::bucket_policy(vec![
                    policy::deny_insecure_transport(p, &b.name),
                    policy::cloudfront_read(p, &b.name, &f.key_prefix(), distribution_arn),
                ]);
            }
        }
    }

    /// Output buckets by format.
    pub fn output_buckets(&self) -> Vec<(Format, String)> {
        Format::ALL
            .iter()
            .filter_map(|f| {
                self.bucket(&output_component(*f))
                    .map(|b| (*f, b.name.clone()))
            })
            .collect()
    }

    /// The bucket of a component name.
    pub fn bucket(&self, component: &str) -> Option<&DesiredBucket> {
        self.buckets.iter().find(|b| b.component == component)
    }
}

/// Component name of the upload bucket.
pub const UPLOAD: &str = "upload-bucket";

/// Component name of an output bucket (`webp-bucket`, …).
pub fn output_component(f: Format) -> String {
    format!("{}-bucket", f.as_str())
}

/// The stack's identity.
pub fn stack_id(stack: &ImageOptimizationStack) -> Result<StackId> {
    let ns = stack
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::InvalidSpec("stack has no namespace".into()))?;
    let name = stack
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::InvalidSpec("stack has no name".into()))?;
    Ok(StackId::new(ns, name, stack.spec.environment.clone()))
}

/// The region a stack lives in.
pub fn region(spec: &ImageOptimizationStackSpec, default_region: &str) -> String {
    spec.region
        .clone()
        .unwrap_or_else(|| default_region.to_string())
}

/// The processor's environment: the contract between operator and processor.
pub fn function_environment(
    spec: &ImageOptimizationStackSpec,
    environment: &str,
    upload: &str,
    outputs: &[(Format, String)],
    table: &str,
) -> BTreeMap<String, String> {
    use imagestack_contract::env;
    let mut m = BTreeMap::new();
    m.insert(env::ENVIRONMENT.to_string(), environment.to_string());
    m.insert(env::UPLOAD_BUCKET.to_string(), upload.to_string());
    for (f, name) in outputs {
        m.insert(env::bucket_var(*f).to_string(), name.clone());
    }
    m.insert(env::METADATA_TABLE.to_string(), table.to_string());
    let formats: Vec<&str> = spec
        .processor
        .formats
        .iter()
        .map(|f| Format::from(*f).as_str())
        .collect();
    m.insert(env::FORMATS.to_string(), formats.join(","));
    m.insert(
        env::WEBP_QUALITY.to_string(),
        spec.processor.quality.webp.to_string(),
    );
    m.insert(
        env::JPEG_QUALITY.to_string(),
        spec.processor.quality.jpeg.to_string(),
    );
    m.insert(
        env::WEBP_METHOD.to_string(),
        spec.processor.webp_method.to_string(),
    );
    m.insert(
        env::MAX_INPUT_BYTES.to_string(),
        spec.processor.max_input_bytes.to_string(),
    );
    m.insert(
        env::MAX_INPUT_PIXELS.to_string(),
        spec.processor.max_input_pixels.to_string(),
    );
    m
}

/// Plan every component of `stack` with default operator options.
pub fn plan(stack: &ImageOptimizationStack, env: &AwsEnv) -> Result<DesiredStack> {
    plan_with(stack, env, &PlanOptions::default())
}

/// Plan every component of `stack`.
pub fn plan_with(
    stack: &ImageOptimizationStack,
    env: &AwsEnv,
    opts: &PlanOptions,
) -> Result<DesiredStack> {
    let id = stack_id(stack)?;
    let spec = &stack.spec;
    let p = env.partition();
    let tags = id.tags(&spec.tags);

    let name_for = |purpose: &str, override_: &Option<String>| -> Result<String> {
        let name = override_
            .clone()
            .unwrap_or_else(|| id.bucket_name(purpose, &env.account_id));
        if !is_valid_bucket_name(&name) {
            return Err(Error::InvalidSpec(format!(
                "bucket name {name:?} is not a valid dot-free S3 bucket name"
            )));
        }
        Ok(name)
    };
    let upload_name = name_for("upload", &spec.buckets.upload.name)?;
    let outputs = [
        (Format::Webp, name_for("webp", &spec.buckets.outputs.webp)?),
        (Format::Jpeg, name_for("jpeg", &spec.buckets.outputs.jpeg)?),
        (Format::Png, name_for("png", &spec.buckets.outputs.png)?),
    ];
    let mut all_names: Vec<&str> = vec![&upload_name];
    all_names.extend(outputs.iter().map(|(_, n)| n.as_str()));
    let mut dedup = all_names.clone();
    dedup.sort();
    dedup.dedup();
    if dedup.len() != all_names.len() {
        return Err(Error::InvalidSpec(
            "spec.buckets: upload and output bucket names must all be different".into(),
        ));
    }

    let cors = &spec.buckets.upload.cors;
    let upload = DesiredBucket {
        component: UPLOAD.to_string(),
        name: upload_name.clone(),
        region: env.region.clone(),
        partition: p.to_string(),
        tags: tags.clone(),
        versioning: Some(spec.buckets.upload.versioning),
        acceleration: Some(spec.buckets.upload.transfer_acceleration),
        cors: Some(vec![Cors {
            allowed_origins: cors.allowed_origins.clone(),
            allowed_methods: cors
                .allowed_methods
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
            allowed_headers: cors.allowed_headers.clone(),
            expose_headers: cors.expose_headers.clone(),
            max_age_seconds: cors.max_age_seconds,
        }]),
        policy: policy::bucket_policy(vec![policy::deny_insecure_transport(p, &upload_name)]),
    };
    let mut buckets = vec![upload];
    for (format, name) in &outputs {
        buckets.push(DesiredBucket {
            component: output_component(*format),
            name: name.clone(),
            region: env.region.clone(),
            partition: p.to_string(),
            tags: tags.clone(),
            versioning: None,
            acceleration: None,
            cors: None,
            policy: policy::bucket_policy(vec![policy::deny_insecure_transport(p, name)]),
        });
    }

    let table_name = spec.table.name.clone().unwrap_or_else(|| id.table_name());
    let table = DesiredTable {
        name: table_name.clone(),
        tags: tags.clone(),
        point_in_time_recovery: spec.table.point_in_time_recovery,
    };

    let function_name = id.function_name();
    let enabled: Vec<Format> = spec.processor.formats.iter().map(|f| (*f).into()).collect();
    let policy_outputs: Vec<(&str, String)> = outputs
        .iter()
        .filter(|(f, _)| enabled.contains(f))
        .map(|(f, n)| (n.as_str(), f.key_prefix()))
        .collect();
    let role_name = id.role_name();
    let role = DesiredRole {
        arn: format!("arn:{p}:iam::{}:role/{role_name}", env.account_id),
        name: role_name,
        trust_policy: policy::lambda_trust_policy(&env.account_id),
        policy_name: id.role_policy_name(),
        policy: policy::processor_policy(&policy::ProcessorPolicyInput {
            partition: p,
            region: &env.region,
            account: &env.account_id,
            function_name: &function_name,
            upload_bucket: &upload_name,
            outputs: policy_outputs,
            table_name: &table_name,
        }),
        tags,
        description: format!(
            "imagestack processor for {}/{} ({})",
            id.namespace, id.name, id.environment
        ),
    };

    let arch = spec.processor.architecture.as_str();
    let code = match &spec.processor.code {
        Some(CodeSpec { s3 }) => CodeSource::S3 {
            bucket: s3.bucket.clone(),
            key: s3.key.clone(),
            sha256: s3.sha256.clone(),
        },
        None => CodeSource::Zip {
            path: opts.artifact_dir.join(format!("{arch}.zip")),
        },
    };
    let function_arn = format!(
        "arn:{p}:lambda:{}:{}:function:{function_name}",
        env.region, env.account_id
    );
    let function = DesiredFunction {
        name: function_name.clone(),
        arn: function_arn.clone(),
        role_arn: role.arn.clone(),
        architecture: arch.to_string(),
        memory_mb: spec.processor.memory_mb,
        timeout_seconds: spec.processor.timeout_seconds,
        environment: function_environment(
            spec,
            &id.environment,
            &upload_name,
            &outputs,
            &table_name,
        ),
        tags: role.tags.clone(),
        description: role.description.clone(),
        code,
        log_retention_days: 30,
        max_retry_attempts: 2,
        max_event_age_seconds: 6 * 3600,
    };
    let upload_arn = format!("arn:{p}:s3:::{upload_name}");
    let permission = DesiredPermission {
        function_name: function_name.clone(),
        function_arn: function_arn.clone(),
        source_bucket_arn: upload_arn,
        source_account: env.account_id.clone(),
    };
    let notification = DesiredNotification {
        bucket: upload_name.clone(),
        function_arn,
    };

    Ok(DesiredStack {
        id,
        env: env.clone(),
        buckets,
        table,
        role,
        function,
        permission,
        notification,
        empty_buckets_on_delete: spec.buckets.empty_on_delete,
    })
}

/// User tags merged with ownership tags (exposed for tests and docs).
pub fn tags_of(stack: &ImageOptimizationStack) -> Result<BTreeMap<String, String>> {
    Ok(stack_id(stack)?.tags(&stack.spec.tags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageOptimizationStackSpec, OutputFormat};

    fn stack(yaml: &str) -> ImageOptimizationStack {
        let spec: ImageOptimizationStackSpec = serde_norway::from_str(yaml).unwrap();
        let mut s = ImageOptimizationStack::new("images", spec);
        s.metadata.namespace = Some("team-a".into());
        s
    }

    fn env() -> AwsEnv {
        AwsEnv {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn defaults_plan_everything() {
        let d = plan(&stack("environment: dev"), &env()).unwrap();
        assert_eq!(d.buckets.len(), 4);
        let up = d.bucket(UPLOAD).unwrap();
        assert_eq!(up.versioning, Some(true));
        assert_eq!(up.acceleration, Some(true));
        let cors = &up.cors.as_ref().unwrap()[0];
        assert_eq!(cors.allowed_methods, vec!["PUT", "POST"]);
        assert_eq!(cors.expose_headers, vec!["ETag"]);
        for b in &d.buckets {
            assert_eq!(
                b.tags.get(crate::naming::OWNER_TAG).unwrap(),
                "team-a/images"
            );
            let stmt = &b.policy["Statement"][0];
            assert_eq!(stmt["Condition"]["Bool"]["aws:SecureTransport"], "false");
            assert_eq!(stmt["Effect"], "Deny");
        }
        let out = d.outputs();
        assert!(
            out.upload_bucket
                .unwrap()
                .starts_with("imagestack-dev-upload-")
        );
        assert!(
            d.role
                .arn
                .starts_with("arn:aws:iam::123456789012:role/imagestack-dev-processor-")
        );
        assert!(!d.table.point_in_time_recovery);
    }

    #[test]
    fn overrides_and_formats() {
        let d = plan(
            &stack(
                r#"
environment: prod
tags: {team: media}
buckets:
  upload: {name: my-uploads, versioning: false, transferAcceleration: false}
  outputs: {webp: my-webp}
table: {name: my-table, pointInTimeRecovery: true}
processor: {formats: [webp]}
"#,
            ),
            &env(),
        )
        .unwrap();
        assert_eq!(d.bucket(UPLOAD).unwrap().name, "my-uploads");
        assert_eq!(d.bucket("webp-bucket").unwrap().name, "my-webp");
        assert_eq!(d.table.name, "my-table");
        assert!(d.table.point_in_time_recovery);
        assert_eq!(d.table.tags.get("team").unwrap(), "media");
        let res = policy::resources(&d.role.policy);
        assert!(res.contains(&"arn:aws:s3:::my-webp/webp/*".to_string()));
        assert!(
            !res.iter()
                .any(|r| r.contains("/jpeg/") || r.contains("/png/")),
            "{res:?}"
        );
        let s = stack("environment: prod");
        assert_eq!(s.spec.processor.formats.len(), 3);
        assert_eq!(s.spec.processor.formats[0], OutputFormat::Webp);
    }

    #[test]
    fn function_environment_follows_the_contract() {
        let d = plan(
            &stack("environment: dev\nprocessor: {formats: [webp, png], quality: {jpeg: 70}}"),
            &env(),
        )
        .unwrap();
        let e = &d.function.environment;
        for var in imagestack_contract::env::ALL {
            assert!(e.contains_key(var), "missing {var}");
        }
        assert_eq!(e[imagestack_contract::env::FORMATS], "webp,png");
        assert_eq!(e[imagestack_contract::env::JPEG_QUALITY], "70");
        assert_eq!(
            e[imagestack_contract::env::UPLOAD_BUCKET],
            d.bucket(UPLOAD).unwrap().name
        );
        assert_eq!(e[imagestack_contract::env::METADATA_TABLE], d.table.name);
        assert_eq!(d.function.role_arn, d.role.arn);
        assert!(
            matches!(&d.function.code, CodeSource::Zip { path } if path.ends_with("x86_64.zip"))
        );
        assert_eq!(
            d.permission.source_bucket_arn,
            format!("arn:aws:s3:::{}", d.bucket(UPLOAD).unwrap().name)
        );
    }

    #[test]
    fn cloudfront_grant_is_per_prefix_and_keeps_tls_only() {
        let mut d = plan(&stack("environment: dev"), &env()).unwrap();
        let arn = "arn:aws:cloudfront::123456789012:distribution/E1";
        d.grant_cloudfront(arn);
        let webp = d.bucket("webp-bucket").unwrap();
        let st = webp.policy["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Sid"], "DenyInsecureTransport");
        assert_eq!(st[1]["Principal"]["Service"], "cloudfront.amazonaws.com");
        assert_eq!(
            st[1]["Resource"],
            format!("arn:aws:s3:::{}/webp/*", webp.name)
        );
        assert_eq!(st[1]["Condition"]["StringEquals"]["AWS:SourceArn"], arn);
        // The upload bucket gets no CloudFront grant.
        assert_eq!(
            d.bucket(UPLOAD).unwrap().policy["Statement"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn duplicate_bucket_names_rejected() {
        let e = plan(
            &stack(
                "environment: dev\nbuckets: {upload: {name: same-name}, outputs: {png: same-name}}",
            ),
            &env(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("must all be different"), "{e}");
    }

    #[test]
    fn region_defaults_to_operator() {
        let s = stack("environment: dev");
        assert_eq!(region(&s.spec, "us-west-2"), "us-west-2");
        let s = stack("environment: dev\nregion: eu-central-1");
        assert_eq!(region(&s.spec, "us-west-2"), "eu-central-1");
    }
}
