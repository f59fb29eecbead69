//! Lambda sequences an emulator does not reproduce reliably, tested with the
//! SDK's own test support (aws-smithy-mocks): each rule answers one call, in
//! order (`RuleMode::Sequential` panics on any call no rule expects, so a
//! test that lists no write rule proves that nothing was written). Errors are
//! HTTP responses shaped like Lambda's (REST-JSON, `X-Amzn-ErrorType`).
//!
//! Covered: IAM propagation delay on `CreateFunction` (`The role defined for
//! the function cannot be assumed by Lambda.`) is a retryable
//! `RoleNotAssumableYet` with nothing written after it; a function whose last
//! update is `InProgress` is not written at all (`FunctionUpdating`); a
//! `ResourceConflictException` on an update is retryable and says the function
//! is busy; `CreateFunction` answering `ResourceConflictException` (made by an
//! interrupted pass) is success; a 403 on `GetFunction` or `GetPolicy` is
//! `AccessDenied` in reconcile and delete, never "absent".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput;
use aws_sdk_cloudwatchlogs::types::LogGroup;
use aws_sdk_lambda::Client as Lambda;
use aws_sdk_lambda::operation::get_function::GetFunctionOutput;
use aws_sdk_lambda::operation::get_function_event_invoke_config::GetFunctionEventInvokeConfigOutput;
use aws_sdk_lambda::types::{
    Architecture, EnvironmentResponse, FunctionConfiguration, LastUpdateStatus, Runtime,
    State as FunctionState,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::SharedCredentialsProvider;
use imagestack_operator::aws::{AwsClients, CallCounter, CallStats};
use imagestack_operator::components::function::{CodeSource, DesiredFunction, HANDLER, RUNTIME};
use imagestack_operator::components::permission::DesiredPermission;
use imagestack_operator::components::{Ctx, Deletion, Report, Resolved, State};
use imagestack_operator::driver::{delete_one, reconcile_one};
use imagestack_operator::error::{Error, ErrorClass};
use imagestack_operator::naming::StackId;

const ACCOUNT: &str = "123456789012";
const NAME: &str = "imagestack-dev-processor-0123abcd";
const ARN: &str =
    "arn:aws:lambda:eu-west-1:123456789012:function:imagestack-dev-processor-0123abcd";
const ROLE: &str = "arn:aws:iam::123456789012:role/imagestack-dev-processor-0123abcd";
const GROUP: &str = "/aws/lambda/imagestack-dev-processor-0123abcd";
const SHA: &str = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

fn stack() -> StackId {
    StackId::new("team-a", "images", "dev").in_cluster("cluster-1")
}

fn desired() -> DesiredFunction {
    DesiredFunction {
        name: NAME.into(),
        arn: ARN.into(),
        architecture: "arm64".into(),
        memory_mb: 1024,
        timeout_seconds: 300,
        environment: BTreeMap::from([("TABLE_NAME".to_string(), "t".to_string())]),
        tags: stack().tags(&BTreeMap::from([("team".to_string(), "media".to_string())])),
        description: "imagestack processor for team-a/images (dev)".into(),
        code: CodeSource::S3 {
            bucket: "artifacts".into(),
            key: "processor/arm64.zip".into(),
            sha256: Some(SHA.into()),
        },
        log_retention_days: 30,
        max_retry_attempts: 2,
        max_event_age_seconds: 6 * 3600,
        reserved_concurrency: None,
        on_failure_destination: None,
    }
}

/// Mocked Lambda and CloudWatch Logs (counted like the operator's clients),
/// inert clients for the rest, and the role's ARN as the role component hands
/// it over.
struct Mocked {
    aws: AwsClients,
    stats: Arc<CallStats>,
    id: StackId,
    inputs: Resolved,
}

impl Mocked {
    fn new(lambda_rules: &[&Rule], logs_rules: &[&Rule]) -> Self {
        let stats = Arc::new(CallStats::default());
        let counter = CallCounter(stats.clone());
        let lambda = mock_client!(
            aws_sdk_lambda,
            RuleMode::Sequential,
            lambda_rules,
            |c: aws_sdk_lambda::config::Builder| c.interceptor(counter.clone())
        );
        let logs = mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::Sequential,
            logs_rules,
            |c: aws_sdk_cloudwatchlogs::config::Builder| c.interceptor(counter.clone())
        );
        // Never called: built from a dummy configuration.
        let cfg = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(
                aws_sdk_lambda::config::Credentials::new("AKID", "SECRET", None, None, "test"),
            ))
            .build();
        let aws = AwsClients {
            lambda,
            logs,
            ..AwsClients::from_sdk_config(&cfg)
        };
        Self {
            aws,
            stats,
            id: stack(),
            inputs: Resolved {
                role_arn: Some(ROLE.into()),
                ..Default::default()
            },
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            aws: &self.aws,
            id: &self.id,
            dry_run: false,
            inputs: &self.inputs,
        }
    }

    fn writes(&self) -> BTreeMap<String, u64> {
        self.stats.write_operations()
    }
}

/// An error as Lambda sends it: REST-JSON body, code in `X-Amzn-ErrorType`.
fn lambda_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "Type": "User", "message": message }).to_string();
    let mut resp = HttpResponse::new(
        StatusCode::try_from(status).expect("valid status"),
        SdkBody::from(body),
    );
    resp.headers_mut()
        .insert("Content-Type", "application/json");
    resp.headers_mut()
        .insert("X-Amzn-ErrorType", code.to_string());
    resp
}

/// A 403 without an error code or body (as a proxy or a HEAD-like answer gives it).
fn bare_forbidden() -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(403).expect("valid status"),
        SdkBody::empty(),
    )
}

fn not_found() -> HttpResponse {
    lambda_error(
        404,
        "ResourceNotFoundException",
        &format!("Function not found: {ARN}"),
    )
}

fn access_denied() -> HttpResponse {
    lambda_error(
        403,
        "AccessDeniedException",
        &format!(
            "User: arn:aws:sts::{ACCOUNT}:assumed-role/imagestack-operator/i-0 is not authorized to perform: lambda:GetFunction on resource: {ARN} because no identity-based policy allows the lambda:GetFunction action"
        ),
    )
}

/// The function as Lambda describes it: in sync with [`desired`] except what
/// `tweak` changes.
fn function(tweak: impl FnOnce(&mut Observed)) -> GetFunctionOutput {
    let d = desired();
    let mut o = Observed {
        state: FunctionState::Active,
        last_update_status: LastUpdateStatus::Successful,
        memory_mb: d.memory_mb,
        code_sha256: SHA.into(),
        tags: d.tags.clone(),
    };
    tweak(&mut o);
    let cfg = FunctionConfiguration::builder()
        .function_name(NAME)
        .function_arn(ARN)
        .role(ROLE)
        .runtime(Runtime::from(RUNTIME))
        .handler(HANDLER)
        .architectures(Architecture::Arm64)
        .memory_size(o.memory_mb)
        .timeout(d.timeout_seconds)
        .description(&d.description)
        .environment(
            EnvironmentResponse::builder()
                .set_variables(Some(d.environment.clone().into_iter().collect()))
                .build(),
        )
        .code_sha256(o.code_sha256)
        .state(o.state)
        .last_update_status(o.last_update_status)
        .build();
    GetFunctionOutput::builder()
        .configuration(cfg)
        .set_tags(Some(o.tags.into_iter().collect::<HashMap<_, _>>()))
        .build()
}

/// What the tests vary of an existing function.
struct Observed {
    state: FunctionState,
    last_update_status: LastUpdateStatus,
    memory_mb: i32,
    code_sha256: String,
    tags: BTreeMap<String, String>,
}

fn get_function(out: GetFunctionOutput) -> Rule {
    mock!(Lambda::get_function)
        .match_requests(|r| r.function_name() == Some(NAME))
        .then_output(move || out.clone())
}

fn invoke_config_in_sync() -> Rule {
    mock!(Lambda::get_function_event_invoke_config)
        .match_requests(|r| r.function_name() == Some(NAME))
        .then_output(|| {
            GetFunctionEventInvokeConfigOutput::builder()
                .function_arn(ARN)
                .maximum_retry_attempts(2)
                .maximum_event_age_in_seconds(6 * 3600)
                .build()
        })
}

fn log_group_in_sync() -> Rule {
    mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups)
        .match_requests(|r| r.log_group_name_prefix() == Some(GROUP))
        .then_output(|| {
            DescribeLogGroupsOutput::builder()
                .log_groups(
                    LogGroup::builder()
                        .log_group_name(GROUP)
                        .retention_in_days(30)
                        .build(),
                )
                .build()
        })
}

fn progressing(report: &Report, want: &str) -> bool {
    matches!(&report.state, State::Progressing { reason, .. } if reason == want)
}

#[tokio::test]
async fn role_not_yet_assumable_on_create_is_retryable_and_nothing_more_is_written() {
    let get = mock!(Lambda::get_function).then_http_response(not_found);
    let logs = log_group_in_sync();
    let create = mock!(Lambda::create_function)
        .match_requests(|r| r.function_name() == Some(NAME) && r.role() == Some(ROLE))
        .then_http_response(|| {
            lambda_error(
                400,
                "InvalidParameterValueException",
                "The role defined for the function cannot be assumed by Lambda.",
            )
        });
    let m = Mocked::new(&[&get, &create], &[&logs]);

    let err = reconcile_one(&m.ctx(), &desired()).await.unwrap_err();
    assert_eq!(err.aws_code(), Some("RoleNotAssumableYet"), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert_eq!(err.reason(), "AWSRetrying", "{err}");
    assert!(
        err.status_message().contains("lambda:CreateFunction"),
        "{err}"
    );
    for rule in [&get, &logs, &create] {
        assert_eq!(rule.num_calls(), 1);
    }
    // The log group was already there: CreateFunction is the only write.
    assert_eq!(m.writes().into_values().sum::<u64>(), 1, "{:?}", m.writes());
}

#[tokio::test]
async fn create_after_an_interrupted_pass_is_success() {
    let get = mock!(Lambda::get_function).then_http_response(not_found);
    let logs = log_group_in_sync();
    let create = mock!(Lambda::create_function).then_http_response(|| {
        lambda_error(
            409,
            "ResourceConflictException",
            &format!("Function already exist: {NAME}"),
        )
    });
    let m = Mocked::new(&[&get, &create], &[&logs]);
    let report = reconcile_one(&m.ctx(), &desired()).await.unwrap();
    assert!(report.created, "{report:?}");
    assert!(progressing(&report, "FunctionCreating"), "{report:?}");
}

#[tokio::test]
async fn busy_function_is_not_written_at_all() {
    // Configuration and tags differ, but the last update is still applying.
    let get = get_function(function(|o| {
        o.last_update_status = LastUpdateStatus::InProgress;
        o.memory_mb = 512;
        o.tags.remove("team");
    }));
    let invoke = invoke_config_in_sync();
    let logs = log_group_in_sync();
    // No UpdateFunctionConfiguration (nor any other write) rule: a write panics.
    let m = Mocked::new(&[&get, &invoke], &[&logs]);

    let report = reconcile_one(&m.ctx(), &desired()).await.unwrap();
    assert!(progressing(&report, "FunctionUpdating"), "{report:?}");
    assert!(report.changes.is_empty(), "{report:?}");
    assert!(!report.created);
    assert_eq!(report.id, ARN);
    assert!(m.writes().is_empty(), "{:?}", m.writes());

    // Still being created (`Pending`): the same.
    let get = get_function(function(|o| {
        o.state = FunctionState::Pending;
        o.memory_mb = 512;
    }));
    let invoke = invoke_config_in_sync();
    let logs = log_group_in_sync();
    let m = Mocked::new(&[&get, &invoke], &[&logs]);
    let report = reconcile_one(&m.ctx(), &desired()).await.unwrap();
    assert!(progressing(&report, "FunctionUpdating"), "{report:?}");
    assert!(m.writes().is_empty(), "{:?}", m.writes());
}

#[tokio::test]
async fn one_configuration_update_per_pass() {
    let get = get_function(function(|o| o.memory_mb = 512));
    let invoke = invoke_config_in_sync();
    let logs = log_group_in_sync();
    let update = mock!(Lambda::update_function_configuration)
        .match_requests(|r| {
            r.function_name() == Some(NAME) && r.memory_size() == Some(1024) && r.role() == Some(ROLE)
        })
        .then_output(|| {
            aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationOutput::builder()
                .function_arn(ARN)
                .last_update_status(LastUpdateStatus::InProgress)
                .build()
        });
    let m = Mocked::new(&[&get, &invoke, &update], &[&logs]);
    let report = reconcile_one(&m.ctx(), &desired()).await.unwrap();
    assert!(progressing(&report, "FunctionUpdating"), "{report:?}");
    assert_eq!(report.changes.len(), 1, "{report:?}");
    assert_eq!(report.changes[0].field, "configuration");
    assert!(report.changes[0].from.contains("memoryMb: 512 → 1024"));
    assert_eq!(update.num_calls(), 1);
}

#[tokio::test]
async fn update_conflict_is_retryable_and_says_the_function_is_busy() {
    let conflict = || {
        lambda_error(
            409,
            "ResourceConflictException",
            &format!(
                "The operation cannot be performed at this time. An update is in progress for resource: {ARN}"
            ),
        )
    };
    // Configuration.
    let get = get_function(function(|o| o.memory_mb = 512));
    let invoke = invoke_config_in_sync();
    let logs = log_group_in_sync();
    let update = mock!(Lambda::update_function_configuration).then_http_response(conflict);
    let m = Mocked::new(&[&get, &invoke, &update], &[&logs]);
    let err = reconcile_one(&m.ctx(), &desired()).await.unwrap_err();
    assert_busy(&err, "lambda:UpdateFunctionConfiguration");
    assert_eq!(update.num_calls(), 1);

    // Code.
    let get = get_function(function(|o| o.code_sha256 = "b2xk".into()));
    let invoke = invoke_config_in_sync();
    let logs = log_group_in_sync();
    let update = mock!(Lambda::update_function_code)
        .match_requests(|r| r.s3_bucket() == Some("artifacts"))
        .then_http_response(conflict);
    let m = Mocked::new(&[&get, &invoke, &update], &[&logs]);
    let err = reconcile_one(&m.ctx(), &desired()).await.unwrap_err();
    assert_busy(&err, "lambda:UpdateFunctionCode");
    assert_eq!(update.num_calls(), 1);
}

fn assert_busy(err: &Error, action: &str) {
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert_eq!(err.reason(), "AWSRetrying", "{err}");
    assert_eq!(err.aws_code(), Some("ResourceConflictException"), "{err}");
    let m = err.status_message();
    assert!(m.starts_with(action), "{m}");
    assert!(m.contains("busy"), "{m}");
}

#[tokio::test]
async fn get_function_403_is_access_denied_in_reconcile_and_delete() {
    for answer in [access_denied as fn() -> HttpResponse, bare_forbidden] {
        let first = mock!(Lambda::get_function).then_http_response(answer);
        let second = mock!(Lambda::get_function).then_http_response(answer);
        let m = Mocked::new(&[&first, &second], &[]);

        let err = reconcile_one(&m.ctx(), &desired()).await.unwrap_err();
        assert_eq!(err.reason(), "AccessDenied", "{err}");
        assert_eq!(err.class(), ErrorClass::Stalled, "{err}");
        assert!(
            err.status_message()
                .starts_with("lambda:GetFunction failed"),
            "{err}"
        );

        // Deletion does not take a denied read for "gone".
        let err = delete_one(&m.ctx(), &desired()).await.unwrap_err();
        assert_eq!(err.reason(), "AccessDenied", "{err}");
        assert!(
            err.status_message()
                .starts_with("lambda:GetFunction failed"),
            "{err}"
        );
        assert!(m.writes().is_empty(), "{:?}", m.writes());
    }
}

fn permission() -> DesiredPermission {
    DesiredPermission {
        function_name: NAME.into(),
        function_arn: ARN.into(),
        source_bucket_arn: "arn:aws:s3:::imagestack-dev-upload-0123456789ab".into(),
        source_account: ACCOUNT.into(),
    }
}

#[tokio::test]
async fn permission_read_403_is_access_denied_and_missing_function_is_gone() {
    let denied = mock!(Lambda::get_policy).then_http_response(access_denied);
    let m = Mocked::new(&[&denied], &[]);
    let err = delete_one(&m.ctx(), &permission()).await.unwrap_err();
    assert_eq!(err.reason(), "AccessDenied", "{err}");
    assert!(
        err.status_message().starts_with("lambda:GetPolicy failed"),
        "{err}"
    );

    // The function is gone: so is its statement; nothing to remove.
    let gone = mock!(Lambda::get_policy).then_http_response(not_found);
    let m = Mocked::new(&[&gone], &[]);
    assert_eq!(
        delete_one(&m.ctx(), &permission()).await.unwrap(),
        Deletion::Absent
    );
    assert!(m.writes().is_empty(), "{:?}", m.writes());
}

/// IAM propagation again: the role just got `sqs:SendMessage` on the
/// failed-event queue, Lambda does not see it yet and refuses the on-failure
/// destination. Retryable, not a stalled stack.
#[tokio::test]
async fn a_destination_permission_not_yet_visible_is_retryable() {
    let get = get_function(function(|_| {}));
    let invoke = mock!(Lambda::get_function_event_invoke_config).then_http_response(not_found);
    let logs = log_group_in_sync();
    let put = mock!(Lambda::put_function_event_invoke_config).then_http_response(|| {
        lambda_error(
            400,
            "InvalidParameterValueException",
            "The function's execution role does not have permissions to call SendMessage on arn:aws:sqs:eu-west-1:123456789012:q",
        )
    });
    let m = Mocked::new(&[&get, &invoke, &put], &[&logs]);
    let mut d = desired();
    d.on_failure_destination = Some("arn:aws:sqs:eu-west-1:123456789012:q".into());
    let err = reconcile_one(&m.ctx(), &d).await.unwrap_err();
    assert_eq!(
        err.aws_code(),
        Some("DestinationPermissionNotVisibleYet"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert_eq!(put.num_calls(), 1);
}
