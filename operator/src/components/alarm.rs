//! CloudWatch metric alarms of a stack: the processor function's errors and
//! throttles, the processor's `ProcessingErrors` rate, and the
//! distribution's 5xx error rate. One component per alarm (each is on
//! status), all built here.
//!
//! Alarms are tagged (`Tags` on `PutMetricAlarm` at creation; tag drift is
//! repaired with `TagResource`/`UntagResource`) and ownership is judged from
//! the tags (`ListTagsForResource`). `PutMetricAlarm` replaces the whole
//! alarm, so an update is one call with every setting; it does not touch the
//! tags of an existing alarm.
//!
//! CloudFront publishes its metrics in us-east-1 only (`Region=Global`), so
//! the CDN alarm lives there (the clients' `cloudwatch_global`), whatever the
//! stack's region; its `DistributionId` dimension comes from the
//! distribution's outputs in the same pass (the graph orders it after the
//! distribution).

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{
    AlarmType, ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat,
    Statistic, Tag,
};

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Updated, code_of, extra_tag_keys,
    missing_tags, owner_from_tags, tag_change,
};
use crate::error::{Error, Result};
use crate::naming::Ownership;

/// The kind of resource, as errors and events name it.
const KIND: &str = "CloudWatch alarm";
/// Every alarm evaluates one 5-minute period.
pub const PERIOD: i32 = 300;

/// One metric: namespace, name, statistic and dimensions (`name → value`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub namespace: String,
    pub name: String,
    pub statistic: String,
    pub dimensions: BTreeMap<String, String>,
}

/// What the alarm watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// One metric compared with the threshold.
    Metric(MetricSpec),
    /// A metric-math expression over metrics with ids (`m1`, `m2`, …): the
    /// expression's value (id `rate`) is compared with the threshold.
    Expression {
        expression: String,
        metrics: Vec<(String, MetricSpec)>,
    },
}

/// What an alarm should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredAlarm {
    pub component: ComponentName,
    pub name: String,
    /// `arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>`.
    pub arn: String,
    /// In us-east-1 (CloudFront metrics), not in the stack's region.
    pub global: bool,
    pub description: String,
    pub watched: Watched,
    /// Add `DistributionId` (this pass's distribution) and `Region=Global`
    /// to every metric's dimensions.
    pub distribution_dimensions: bool,
    pub threshold: f64,
    /// `GreaterThanThreshold`, …
    pub comparison: String,
    pub evaluation_periods: i32,
    /// `notBreaching`: no data (no traffic) is not an alarm.
    pub treat_missing_data: String,
    /// SNS topics notified on ALARM and on OK (`spec.alarms.actions`).
    pub actions: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// The settings of an alarm in comparable form (desired or observed).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub description: String,
    pub watched: Watched,
    pub period: i32,
    pub threshold: f64,
    pub comparison: String,
    pub evaluation_periods: i32,
    pub treat_missing_data: String,
    pub actions_enabled: bool,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
}

/// An alarm as read from CloudWatch.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedAlarm {
    pub arn: String,
    pub settings: Settings,
    pub tags: BTreeMap<String, String>,
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn metric_of(m: Option<&Metric>, stat: Option<&str>) -> MetricSpec {
    MetricSpec {
        namespace: m.and_then(Metric::namespace).unwrap_or_default().into(),
        name: m.and_then(Metric::metric_name).unwrap_or_default().into(),
        statistic: stat.unwrap_or_default().into(),
        dimensions: m
            .map(Metric::dimensions)
            .unwrap_or_default()
            .iter()
            .map(|d| {
                (
                    d.name().unwrap_or_default().to_string(),
                    d.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    }
}

/// The comparable settings of an alarm as CloudWatch describes it.
pub fn observed_settings(a: &MetricAlarm) -> Settings {
    let (watched, period) = if a.metrics().is_empty() {
        let dims = a
            .dimensions()
            .iter()
            .map(|d| {
                (
                    d.name().unwrap_or_default().to_string(),
                    d.value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        (
            Watched::Metric(MetricSpec {
                namespace: a.namespace().unwrap_or_default().into(),
                name: a.metric_name().unwrap_or_default().into(),
                statistic: a.statistic().map(|s| s.as_str()).unwrap_or_default().into(),
                dimensions: dims,
            }),
            a.period().unwrap_or_default(),
        )
    } else {
        let mut expression = String::new();
        let mut metrics = Vec::new();
        let mut period = 0;
        for q in a.metrics() {
            let id = q.id().unwrap_or_default().to_string();
            if let Some(e) = q.expression() {
                expression = e.to_string();
            } else if let Some(ms) = q.metric_stat() {
                period = ms.period().unwrap_or_default();
                metrics.push((id, metric_of(ms.metric(), ms.stat())));
            }
        }
        metrics.sort_by(|x, y| x.0.cmp(&y.0));
        (
            Watched::Expression {
                expression,
                metrics,
            },
            period,
        )
    };
    Settings {
        description: a.alarm_description().unwrap_or_default().into(),
        watched,
        period,
        threshold: a.threshold().unwrap_or_default(),
        comparison: a
            .comparison_operator()
            .map(|c| c.as_str())
            .unwrap_or_default()
            .into(),
        evaluation_periods: a.evaluation_periods().unwrap_or_default(),
        treat_missing_data: a.treat_missing_data().unwrap_or("missing").into(),
        actions_enabled: a.actions_enabled().unwrap_or(true),
        alarm_actions: sorted(a.alarm_actions()),
        ok_actions: sorted(a.ok_actions()),
    }
}

impl DesiredAlarm {
    /// The settings for this pass (the distribution's id from `cx.inputs`).
    pub fn settings(&self, cx: &Ctx<'_>) -> Result<Settings> {
        let mut watched = self.watched.clone();
        if self.distribution_dimensions {
            let id = cx.inputs.require_distribution()?.id.clone();
            let add = |m: &mut MetricSpec| {
                m.dimensions.insert("DistributionId".into(), id.clone());
                m.dimensions.insert("Region".into(), "Global".into());
            };
            match &mut watched {
                Watched::Metric(m) => add(m),
                Watched::Expression { metrics, .. } => metrics.iter_mut().for_each(|(_, m)| add(m)),
            }
        }
        if let Watched::Expression { metrics, .. } = &mut watched {
            metrics.sort_by(|x, y| x.0.cmp(&y.0));
        }
        let actions = sorted(&self.actions);
        Ok(Settings {
            description: self.description.clone(),
            watched,
            period: PERIOD,
            threshold: self.threshold,
            comparison: self.comparison.clone(),
            evaluation_periods: self.evaluation_periods,
            treat_missing_data: self.treat_missing_data.clone(),
            actions_enabled: true,
            alarm_actions: actions.clone(),
            ok_actions: actions,
        })
    }

    fn client<'a>(&self, cx: &'a Ctx<'_>) -> &'a aws_sdk_cloudwatch::Client {
        if self.global {
            &cx.aws.cloudwatch_global
        } else {
            &cx.aws.cloudwatch
        }
    }

    /// `PutMetricAlarm` with every setting (creates or replaces); `tags` only on creation.
    async fn put(&self, cx: &Ctx<'_>, s: &Settings, tags: bool) -> Result<()> {
        let dims = |m: &MetricSpec| -> Vec<Dimension> {
            m.dimensions
                .iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect()
        };
        let mut req = self
            .client(cx)
            .put_metric_alarm()
            .alarm_name(&self.name)
            .alarm_description(&s.description)
            .actions_enabled(s.actions_enabled)
            .set_alarm_actions(Some(s.alarm_actions.clone()))
            .set_ok_actions(Some(s.ok_actions.clone()))
            .threshold(s.threshold)
            .comparison_operator(ComparisonOperator::from(s.comparison.as_str()))
            .evaluation_periods(s.evaluation_periods)
            .treat_missing_data(&s.treat_missing_data);
        match &s.watched {
            Watched::Metric(m) => {
                req = req
                    .namespace(&m.namespace)
                    .metric_name(&m.name)
                    .statistic(Statistic::from(m.statistic.as_str()))
                    .set_dimensions(Some(dims(m)))
                    .period(s.period);
            }
            Watched::Expression {
                expression,
                metrics,
            } => {
                for (id, m) in metrics {
                    req = req.metrics(
                        MetricDataQuery::builder()
                            .id(id)
                            .return_data(false)
                            .metric_stat(
                                MetricStat::builder()
                                    .metric(
                                        Metric::builder()
                                            .namespace(&m.namespace)
                                            .metric_name(&m.name)
                                            .set_dimensions(Some(dims(m)))
                                            .build(),
                                    )
                                    .period(s.period)
                                    .stat(&m.statistic)
                                    .build(),
                            )
                            .build(),
                    );
                }
                req = req.metrics(
                    MetricDataQuery::builder()
                        .id("rate")
                        .expression(expression)
                        .label(&self.description)
                        .return_data(true)
                        .build(),
                );
            }
        }
        if tags {
            req = req.set_tags(Some(cw_tags(&self.tags)));
        }
        req.send()
            .await
            .map_err(|e| Error::aws("cloudwatch:PutMetricAlarm", e))?;
        Ok(())
    }
}

fn cw_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Every setting that differs, named (`threshold: 5 → 1`).
pub fn diff(want: &Settings, have: &Settings) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cmp = |field: &str, a: String, b: String| {
        if a != b {
            out.push(Change::new(field, a, b));
        }
    };
    let show_watched = |w: &Watched| match w {
        Watched::Metric(m) => format!("{m:?}"),
        Watched::Expression {
            expression,
            metrics,
        } => format!("{expression} {metrics:?}"),
    };
    cmp(
        "metric",
        show_watched(&have.watched),
        show_watched(&want.watched),
    );
    cmp("period", have.period.to_string(), want.period.to_string());
    cmp(
        "threshold",
        have.threshold.to_string(),
        want.threshold.to_string(),
    );
    cmp(
        "comparisonOperator",
        have.comparison.clone(),
        want.comparison.clone(),
    );
    cmp(
        "evaluationPeriods",
        have.evaluation_periods.to_string(),
        want.evaluation_periods.to_string(),
    );
    cmp(
        "treatMissingData",
        have.treat_missing_data.clone(),
        want.treat_missing_data.clone(),
    );
    cmp(
        "actionsEnabled",
        have.actions_enabled.to_string(),
        want.actions_enabled.to_string(),
    );
    cmp(
        "alarmActions",
        have.alarm_actions.join(","),
        want.alarm_actions.join(","),
    );
    cmp(
        "okActions",
        have.ok_actions.join(","),
        want.ok_actions.join(","),
    );
    if have.description != want.description {
        out.push(Change::new("description", "differs", "as planned"));
    }
    // The metric's text can be long: say which part differs, not all of it.
    for c in &mut out {
        if c.field == "metric" {
            c.from = "differs".into();
            c.to = "as planned".into();
        }
    }
    out
}

impl Component for DesiredAlarm {
    type Observed = ObservedAlarm;

    fn name(&self) -> ComponentName {
        self.component
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    fn id(&self) -> String {
        self.arn.clone()
    }
    fn observed_id(&self, seen: &ObservedAlarm) -> Option<String> {
        (!seen.arn.is_empty()).then(|| seen.arn.clone())
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedAlarm>> {
        let cw = self.client(cx);
        let out = cw
            .describe_alarms()
            .alarm_names(&self.name)
            .alarm_types(AlarmType::MetricAlarm)
            .send()
            .await
            .map_err(|e| Error::aws("cloudwatch:DescribeAlarms", e))?;
        let Some(a) = out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(self.name.as_str()))
        else {
            return Ok(None);
        };
        let arn = a.alarm_arn().unwrap_or(&self.arn).to_string();
        let tags = cw
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(|e| Error::aws("cloudwatch:ListTagsForResource", e))?
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        Ok(Some(ObservedAlarm {
            arn,
            settings: observed_settings(a),
            tags,
        }))
    }

    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedAlarm) -> Ownership {
        owner_from_tags(cx, &seen.tags)
    }

    fn diff(&self, cx: &Ctx<'_>, seen: &ObservedAlarm) -> Result<Vec<Change>> {
        let mut out = diff(&self.settings(cx)?, &seen.settings);
        if let Some(c) = tag_change(&self.tags, &seen.tags) {
            out.push(c);
        }
        Ok(out)
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        self.put(cx, &self.settings(cx)?, true).await?;
        tracing::info!(alarm = %self.name, "created CloudWatch alarm");
        Ok(Created::done())
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedAlarm,
        changes: &[Change],
    ) -> Result<Updated> {
        let cw = self.client(cx);
        if changes.iter().any(|c| c.field != "tags") {
            self.put(cx, &self.settings(cx)?, false).await?;
        }
        if changes.iter().any(|c| c.field == "tags") {
            let extra = extra_tag_keys(&self.tags, &seen.tags);
            if !extra.is_empty() {
                cw.untag_resource()
                    .resource_arn(&seen.arn)
                    .set_tag_keys(Some(extra))
                    .send()
                    .await
                    .map_err(|e| Error::aws("cloudwatch:UntagResource", e))?;
            }
            let missing: BTreeMap<String, String> = missing_tags(&self.tags, &seen.tags);
            if !missing.is_empty() {
                cw.tag_resource()
                    .resource_arn(&seen.arn)
                    .set_tags(Some(cw_tags(&missing)))
                    .send()
                    .await
                    .map_err(|e| Error::aws("cloudwatch:TagResource", e))?;
            }
        }
        Ok(Updated::all(changes))
    }

    async fn delete(&self, cx: &Ctx<'_>, _seen: &ObservedAlarm) -> Result<Deletion> {
        match self
            .client(cx)
            .delete_alarms()
            .alarm_names(&self.name)
            .send()
            .await
        {
            Ok(_) => Ok(Deletion::Gone),
            Err(e) if code_of(&e) == Some("ResourceNotFound") => Ok(Deletion::Gone),
            Err(e) => Err(Error::aws("cloudwatch:DeleteAlarms", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            description: "d".into(),
            watched: Watched::Metric(MetricSpec {
                namespace: "AWS/Lambda".into(),
                name: "Errors".into(),
                statistic: "Sum".into(),
                dimensions: BTreeMap::from([("FunctionName".into(), "f".into())]),
            }),
            period: 300,
            threshold: 0.0,
            comparison: "GreaterThanThreshold".into(),
            evaluation_periods: 1,
            treat_missing_data: "notBreaching".into(),
            actions_enabled: true,
            alarm_actions: vec!["arn:aws:sns:eu-west-1:1:ops".into()],
            ok_actions: vec!["arn:aws:sns:eu-west-1:1:ops".into()],
        }
    }

    #[test]
    fn in_sync_has_no_diff_and_drift_is_named() {
        let want = settings();
        assert!(diff(&want, &want).is_empty());
        let mut have = want.clone();
        have.threshold = 5.0;
        have.alarm_actions.clear();
        if let Watched::Metric(m) = &mut have.watched {
            m.dimensions.insert("FunctionName".into(), "other".into());
        }
        let fields: Vec<String> = diff(&want, &have).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["metric", "threshold", "alarmActions"]);
    }

    #[test]
    fn an_alarm_reads_back_into_the_same_settings() {
        let want = settings();
        let a = MetricAlarm::builder()
            .alarm_description("d")
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .statistic(Statistic::Sum)
            .dimensions(Dimension::builder().name("FunctionName").value("f").build())
            .period(300)
            .threshold(0.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .evaluation_periods(1)
            .treat_missing_data("notBreaching")
            .actions_enabled(true)
            .alarm_actions("arn:aws:sns:eu-west-1:1:ops")
            .ok_actions("arn:aws:sns:eu-west-1:1:ops")
            .build();
        assert_eq!(observed_settings(&a), want);
    }
}
