//! `ticketd.v1.AutomationService`: authorise, convert, call the service, convert back.

use tonic::{Request, Response, Status};

use super::auth::{ADMIN, authorize};
use super::convert;
use super::pb::{self, automation_service_server::AutomationService};
use crate::domain::template::Template;
use crate::domain::validation::Violations;
use crate::service::automation::{TemplatePatch, TemplateSource, WorkflowSource};
use crate::service::{ServiceError, Services};

pub struct AutomationApi {
    services: Services,
}

impl AutomationApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn template_to_pb(t: Template) -> pb::Template {
    pb::Template {
        id: t.id.to_string(),
        name: t.name,
        channel: convert::channel_to_pb(t.channel),
        subject: t.subject,
        body: t.body,
        etag: t.version.to_string(),
    }
}

/// The fields of a template as a client sent them; the service checks them whole.
fn template_patch(t: pb::Template) -> Result<TemplatePatch, Status> {
    let mut v = Violations::new();
    let channel = convert::channel_from_pb(t.channel, "template.channel", &mut v);
    v.finish().map_err(ServiceError::Invalid)?;
    Ok(TemplatePatch {
        name: t.name,
        channel,
        subject: t.subject,
        body: t.body,
    })
}

#[tonic::async_trait]
impl AutomationService for AutomationApi {
    async fn create_auto_response(
        &self,
        request: Request<pb::CreateAutoResponseRequest>,
    ) -> Reply<pb::CreateAutoResponseResponse> {
        let principal = authorize(&request, "CreateAutoResponse", ADMIN).await?;
        let patch =
            convert::auto_response_patch(request.into_inner().auto_response.unwrap_or_default())?;
        let response = self
            .services
            .automation
            .create_auto_response(&principal.actor(), patch)
            .await?;
        Ok(Response::new(pb::CreateAutoResponseResponse {
            auto_response: Some(convert::auto_response_to_pb(response)),
        }))
    }

    async fn update_auto_response(
        &self,
        request: Request<pb::UpdateAutoResponseRequest>,
    ) -> Reply<pb::UpdateAutoResponseResponse> {
        let principal = authorize(&request, "UpdateAutoResponse", ADMIN).await?;
        let r = request.into_inner();
        let a = r.auto_response.unwrap_or_default();
        let id = convert::required_uuid("auto_response.id", &a.id)?;
        let patch = convert::auto_response_patch(a)?;
        let response = self
            .services
            .automation
            .update_auto_response(
                &principal.actor(),
                id,
                patch,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateAutoResponseResponse {
            auto_response: Some(convert::auto_response_to_pb(response)),
        }))
    }

    async fn list_auto_responses(
        &self,
        request: Request<pb::ListAutoResponsesRequest>,
    ) -> Reply<pb::ListAutoResponsesResponse> {
        authorize(&request, "ListAutoResponses", ADMIN).await?;
        let responses = self.services.automation.list_auto_responses().await?;
        Ok(Response::new(pb::ListAutoResponsesResponse {
            auto_responses: responses
                .into_iter()
                .map(convert::auto_response_to_pb)
                .collect(),
        }))
    }

    async fn delete_auto_response(
        &self,
        request: Request<pb::DeleteAutoResponseRequest>,
    ) -> Reply<pb::DeleteAutoResponseResponse> {
        let principal = authorize(&request, "DeleteAutoResponse", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        self.services
            .automation
            .delete_auto_response(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::DeleteAutoResponseResponse {}))
    }

    async fn create_workflow(
        &self,
        request: Request<pb::CreateWorkflowRequest>,
    ) -> Reply<pb::CreateWorkflowResponse> {
        let principal = authorize(&request, "CreateWorkflow", ADMIN).await?;
        let patch = convert::workflow_patch(request.into_inner().workflow.unwrap_or_default())?;
        let workflow = self
            .services
            .automation
            .create_workflow(&principal.actor(), patch)
            .await?;
        Ok(Response::new(pb::CreateWorkflowResponse {
            workflow: Some(convert::workflow_to_pb(workflow)),
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> Reply<pb::GetWorkflowResponse> {
        authorize(&request, "GetWorkflow", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        let workflow = self.services.automation.workflow(id).await?;
        Ok(Response::new(pb::GetWorkflowResponse {
            workflow: Some(convert::workflow_to_pb(workflow)),
        }))
    }

    async fn update_workflow(
        &self,
        request: Request<pb::UpdateWorkflowRequest>,
    ) -> Reply<pb::UpdateWorkflowResponse> {
        let principal = authorize(&request, "UpdateWorkflow", ADMIN).await?;
        let r = request.into_inner();
        let w = r.workflow.unwrap_or_default();
        let id = convert::required_uuid("workflow.id", &w.id)?;
        let patch = convert::workflow_patch(w)?;
        let workflow = self
            .services
            .automation
            .update_workflow(
                &principal.actor(),
                id,
                patch,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateWorkflowResponse {
            workflow: Some(convert::workflow_to_pb(workflow)),
        }))
    }

    async fn list_workflows(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> Reply<pb::ListWorkflowsResponse> {
        authorize(&request, "ListWorkflows", ADMIN).await?;
        let workflows = self.services.automation.list_workflows().await?;
        Ok(Response::new(pb::ListWorkflowsResponse {
            workflows: workflows.into_iter().map(convert::workflow_to_pb).collect(),
        }))
    }

    async fn delete_workflow(
        &self,
        request: Request<pb::DeleteWorkflowRequest>,
    ) -> Reply<pb::DeleteWorkflowResponse> {
        let principal = authorize(&request, "DeleteWorkflow", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        self.services
            .automation
            .delete_workflow(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::DeleteWorkflowResponse {}))
    }

    async fn test_workflow(
        &self,
        request: Request<pb::TestWorkflowRequest>,
    ) -> Reply<pb::TestWorkflowResponse> {
        authorize(&request, "TestWorkflow", ADMIN).await?;
        let r = request.into_inner();
        let ticket_id = convert::required_uuid("ticket_id", &r.ticket_id)?;
        let source = match r.source {
            Some(pb::test_workflow_request::Source::WorkflowId(id)) => {
                WorkflowSource::Saved(convert::required_uuid("workflow_id", &id)?)
            }
            Some(pb::test_workflow_request::Source::Workflow(w)) => {
                WorkflowSource::Draft(convert::workflow_patch(w)?)
            }
            None => {
                return Err(ServiceError::invalid(
                    "workflow_id",
                    "name a saved workflow, or send one as `workflow`",
                )
                .into());
            }
        };
        let trial = self
            .services
            .automation
            .test_workflow(source, ticket_id)
            .await?;
        Ok(Response::new(pb::TestWorkflowResponse {
            matched: trial.matched,
            actions: trial.actions,
            reason: trial.reason,
        }))
    }

    async fn create_template(
        &self,
        request: Request<pb::CreateTemplateRequest>,
    ) -> Reply<pb::CreateTemplateResponse> {
        let principal = authorize(&request, "CreateTemplate", ADMIN).await?;
        let patch = template_patch(request.into_inner().template.unwrap_or_default())?;
        let template = self
            .services
            .automation
            .create_template(&principal.actor(), patch)
            .await?;
        Ok(Response::new(pb::CreateTemplateResponse {
            template: Some(template_to_pb(template)),
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Reply<pb::GetTemplateResponse> {
        authorize(&request, "GetTemplate", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        let template = self.services.automation.template(id).await?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(template_to_pb(template)),
        }))
    }

    async fn update_template(
        &self,
        request: Request<pb::UpdateTemplateRequest>,
    ) -> Reply<pb::UpdateTemplateResponse> {
        let principal = authorize(&request, "UpdateTemplate", ADMIN).await?;
        let r = request.into_inner();
        let t = r.template.unwrap_or_default();
        let id = convert::required_uuid("template.id", &t.id)?;
        let patch = template_patch(t)?;
        let template = self
            .services
            .automation
            .update_template(
                &principal.actor(),
                id,
                patch,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateTemplateResponse {
            template: Some(template_to_pb(template)),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Reply<pb::ListTemplatesResponse> {
        authorize(&request, "ListTemplates", ADMIN).await?;
        let templates = self.services.automation.templates().await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: templates.into_iter().map(template_to_pb).collect(),
        }))
    }

    async fn delete_template(
        &self,
        request: Request<pb::DeleteTemplateRequest>,
    ) -> Reply<pb::DeleteTemplateResponse> {
        let principal = authorize(&request, "DeleteTemplate", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        self.services
            .automation
            .delete_template(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::DeleteTemplateResponse {}))
    }

    async fn render_template(
        &self,
        request: Request<pb::RenderTemplateRequest>,
    ) -> Reply<pb::RenderTemplateResponse> {
        authorize(&request, "RenderTemplate", ADMIN).await?;
        let r = request.into_inner();
        let ticket_id = convert::required_uuid("ticket_id", &r.ticket_id)?;
        let source = match r.source {
            Some(pb::render_template_request::Source::TemplateId(id)) => {
                TemplateSource::Saved(convert::required_uuid("template_id", &id)?)
            }
            Some(pb::render_template_request::Source::Template(t)) => {
                TemplateSource::Draft(template_patch(t)?)
            }
            None => {
                return Err(ServiceError::invalid(
                    "template_id",
                    "name a saved template, or send one as `template`",
                )
                .into());
            }
        };
        let rendered = self
            .services
            .automation
            .render_template(source, ticket_id)
            .await?;
        Ok(Response::new(pb::RenderTemplateResponse {
            subject: rendered.subject,
            body: rendered.body,
            segments: i32::try_from(rendered.segments).unwrap_or(i32::MAX),
        }))
    }
}
