//! `ticketd.v1.ViewService`: authorise, convert, call the service, convert back.

use tonic::{Request, Response, Status};

use super::auth::{STAFF, authorize};
use super::convert;
use super::pb::{self, view_service_server::ViewService};
use crate::domain::validation::Violations;
use crate::service::views::{Listed, ViewPatch};
use crate::service::{ServiceError, Services};

pub struct ViewApi {
    services: Services,
}

impl ViewApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn view_to_pb(view: Listed, count: i64) -> pb::View {
    match view {
        Listed::BuiltIn(b) => pb::View {
            id: b.id().into(),
            name: b.name().into(),
            filter: b.filter_text().into(),
            order_by: String::new(),
            columns: Vec::new(),
            owner_agent_id: String::new(),
            shared: true,
            built_in: true,
            count,
            etag: "1".into(),
        },
        Listed::Saved(v) => pb::View {
            id: v.id.to_string(),
            name: v.name,
            filter: v.filter,
            order_by: v.order_by,
            columns: v.columns,
            owner_agent_id: convert::optional_id(v.owner_agent_id),
            shared: v.owner_agent_id.is_none(),
            built_in: false,
            count,
            etag: v.version.to_string(),
        },
    }
}

fn view_patch(v: pb::View) -> Result<ViewPatch, ServiceError> {
    let mut violations = Violations::new();
    let owner = convert::optional_uuid("view.owner_agent_id", &v.owner_agent_id, &mut violations);
    violations.finish()?;
    Ok(ViewPatch {
        name: v.name,
        filter: v.filter,
        order_by: v.order_by,
        columns: v.columns,
        owner_agent_id: owner,
    })
}

fn listed_id(view: &Listed) -> String {
    match view {
        Listed::BuiltIn(b) => b.id().to_owned(),
        Listed::Saved(v) => v.id.to_string(),
    }
}

#[tonic::async_trait]
impl ViewService for ViewApi {
    async fn create_view(
        &self,
        request: Request<pb::CreateViewRequest>,
    ) -> Reply<pb::CreateViewResponse> {
        let principal = authorize(&request, "CreateView", STAFF).await?;
        let patch = view_patch(request.into_inner().view.unwrap_or_default())?;
        let view = self.services.views.create(&principal, patch).await?;
        Ok(Response::new(pb::CreateViewResponse {
            view: Some(view_to_pb(Listed::Saved(view), 0)),
        }))
    }

    async fn get_view(&self, request: Request<pb::GetViewRequest>) -> Reply<pb::GetViewResponse> {
        let principal = authorize(&request, "GetView", STAFF).await?;
        let view = self
            .services
            .views
            .get(&principal, &request.into_inner().id)
            .await?;
        Ok(Response::new(pb::GetViewResponse {
            view: Some(view_to_pb(view, 0)),
        }))
    }

    async fn update_view(
        &self,
        request: Request<pb::UpdateViewRequest>,
    ) -> Reply<pb::UpdateViewResponse> {
        let principal = authorize(&request, "UpdateView", STAFF).await?;
        let r = request.into_inner();
        let v = r.view.unwrap_or_default();
        let id = v.id.clone();
        let view = self
            .services
            .views
            .update(
                &principal,
                &id,
                view_patch(v)?,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateViewResponse {
            view: Some(view_to_pb(Listed::Saved(view), 0)),
        }))
    }

    async fn list_views(
        &self,
        request: Request<pb::ListViewsRequest>,
    ) -> Reply<pb::ListViewsResponse> {
        let principal = authorize(&request, "ListViews", STAFF).await?;
        let include_counts = request.into_inner().include_counts;
        let views = self.services.views.list(&principal).await?;
        let mut out = Vec::with_capacity(views.len());
        for view in views {
            let count = if include_counts {
                match self
                    .services
                    .tickets
                    .count(&principal, "", &listed_id(&view))
                    .await
                {
                    Ok(count) => count,
                    // A view of "my" tickets holds none for a key with no agent.
                    Err(ServiceError::Invalid(_)) => 0,
                    Err(other) => return Err(other.into()),
                }
            } else {
                0
            };
            out.push(view_to_pb(view, count));
        }
        Ok(Response::new(pb::ListViewsResponse { views: out }))
    }

    async fn delete_view(
        &self,
        request: Request<pb::DeleteViewRequest>,
    ) -> Reply<pb::DeleteViewResponse> {
        let principal = authorize(&request, "DeleteView", STAFF).await?;
        self.services
            .views
            .delete(&principal, &request.into_inner().id)
            .await?;
        Ok(Response::new(pb::DeleteViewResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::view::BuiltIn;

    #[test]
    fn built_ins_show_as_shared_views_with_fixed_ids() {
        let v = view_to_pb(Listed::BuiltIn(BuiltIn::Overdue), 3);
        assert_eq!(
            (v.id.as_str(), v.built_in, v.shared, v.count),
            ("overdue", true, true, 3)
        );
    }
}
