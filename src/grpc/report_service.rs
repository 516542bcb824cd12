//! `ticketd.v1.ReportService`: authorise, convert, call the service, convert back.

use chrono::{DateTime, Datelike, Utc};
use tonic::{Request, Response, Status};

use super::auth::{STAFF, authorize};
use super::convert;
use super::pb::{self, report_service_server::ReportService};
use super::streams::GrpcStream;
use crate::domain::report::{Dimension, Interval, Metric};
use crate::domain::validation::Violations;
use crate::service::reports::{ReportInput, ReportRow, to_csv};
use crate::service::{ServiceError, Services};

pub struct ReportApi {
    services: Services,
}

impl ReportApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The most bytes of CSV one `ExportReport` message carries.
const CSV_CHUNK_BYTES: usize = 64 * 1024;

fn required_time(
    field: &str,
    at: Option<prost_types::Timestamp>,
    v: &mut Violations,
) -> Option<DateTime<Utc>> {
    match at {
        None => {
            v.add(field, "is required");
            None
        }
        Some(t) => match convert::time_from_pb(field, t, v) {
            // Report arithmetic counts seconds from 1970 on.
            Some(at) if at.year() < 1970 => {
                v.add(field, "must fall in the years 1970 to 9999");
                None
            }
            at => at,
        },
    }
}

fn input_from_pb(r: pb::RunReportRequest) -> Result<ReportInput, ServiceError> {
    let mut v = Violations::new();
    use pb::{ReportDimension as D, ReportInterval as I, ReportMetric as M};
    let metric = match M::try_from(r.metric) {
        Ok(M::TicketsCreated) => Some(Metric::TicketsCreated),
        Ok(M::TicketsResolved) => Some(Metric::TicketsResolved),
        Ok(M::Backlog) => Some(Metric::Backlog),
        Ok(M::FirstResponseTime) => Some(Metric::FirstResponseTime),
        Ok(M::ResolutionTime) => Some(Metric::ResolutionTime),
        Ok(M::SlaCompliance) => Some(Metric::SlaCompliance),
        Ok(M::Csat) => Some(Metric::Csat),
        Ok(M::TimeLogged) => Some(Metric::TimeLogged),
        Ok(M::Unspecified) | Err(_) => {
            v.add("metric", "must name a ReportMetric");
            None
        }
    };
    let interval = match I::try_from(r.interval) {
        Ok(I::Unspecified | I::None) => Interval::None,
        Ok(I::Day) => Interval::Day,
        Ok(I::Week) => Interval::Week,
        Ok(I::Month) => Interval::Month,
        Err(_) => {
            v.add("interval", "is not a ReportInterval");
            Interval::None
        }
    };
    let group_by = match D::try_from(r.group_by) {
        Ok(D::Unspecified) => None,
        Ok(D::Queue) => Some(Dimension::Queue),
        Ok(D::Priority) => Some(Dimension::Priority),
        Ok(D::Channel) => Some(Dimension::Channel),
        Ok(D::Type) => Some(Dimension::Type),
        Ok(D::Assignee) => Some(Dimension::Assignee),
        Ok(D::Tag) => Some(Dimension::Tag),
        Err(_) => {
            v.add("group_by", "is not a ReportDimension");
            None
        }
    };
    let start = required_time("start_time", r.start_time, &mut v);
    let end = required_time("end_time", r.end_time, &mut v);
    let calendar_id = convert::optional_uuid("calendar_id", &r.calendar_id, &mut v);
    v.finish()?;
    match (metric, start, end) {
        (Some(metric), Some(start), Some(end)) => Ok(ReportInput {
            metric,
            start,
            end,
            time_zone: r.time_zone,
            interval,
            group_by,
            filter: r.filter,
            calendar_id,
        }),
        _ => Err(ServiceError::invalid("metric", "is required")),
    }
}

fn row_to_pb(row: ReportRow) -> pb::ReportRow {
    pb::ReportRow {
        bucket_start: Some(convert::timestamp(row.bucket_start)),
        group: row.group,
        count: row.count,
        value: row.value,
        mean: row.mean,
        median: row.median,
        p90: row.p90,
        group_label: row.group_label,
        series: row.series,
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn run_report(
        &self,
        request: Request<pb::RunReportRequest>,
    ) -> Reply<pb::RunReportResponse> {
        let principal = authorize(&request, "RunReport", STAFF).await?;
        let input = input_from_pb(request.into_inner())?;
        let (rows, _) = self.services.reports.run(&principal, &input).await?;
        Ok(Response::new(pb::RunReportResponse {
            rows: rows.into_iter().map(row_to_pb).collect(),
        }))
    }

    type ExportReportStream = GrpcStream<pb::ExportReportResponse>;

    async fn export_report(
        &self,
        request: Request<pb::ExportReportRequest>,
    ) -> Reply<Self::ExportReportStream> {
        let principal = authorize(&request, "ExportReport", STAFF).await?;
        let r = request.into_inner();
        let input = input_from_pb(pb::RunReportRequest {
            metric: r.metric,
            start_time: r.start_time,
            end_time: r.end_time,
            time_zone: r.time_zone,
            interval: r.interval,
            group_by: r.group_by,
            filter: r.filter,
            calendar_id: r.calendar_id,
        })?;
        let (rows, zone) = self.services.reports.run(&principal, &input).await?;
        let csv = to_csv(&rows, zone)?;
        let stream = async_stream::stream! {
            for chunk in csv.chunks(CSV_CHUNK_BYTES) {
                yield Ok(pb::ExportReportResponse { chunk: chunk.to_vec() });
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}
