//! `ticketd.v1.ContactService`: authorise, convert, call the service, convert back.

use tonic::{Request, Response, Status};

use super::auth::{STAFF, authorize};
use super::convert;
use super::pb::{self, contact_service_server::ContactService};
use crate::domain::contact::ContactRecord;
use crate::service::Services;
use crate::service::contacts::{ContactFilter, ContactPatch};

pub struct ContactApi {
    services: Services,
}

impl ContactApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn contact_to_pb(record: ContactRecord) -> pb::Contact {
    let c = record.contact;
    pb::Contact {
        id: c.id.to_string(),
        external_id: c.external_id,
        name: c.name,
        email: c.email,
        phone: c.phone,
        vip: Some(c.vip),
        emails: record.emails,
        phones: record.phones,
        etag: record.version.to_string(),
    }
}

#[tonic::async_trait]
impl ContactService for ContactApi {
    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Reply<pb::GetContactResponse> {
        authorize(&request, "GetContact", STAFF).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        let contact = self.services.contacts.get(id).await?;
        Ok(Response::new(pb::GetContactResponse {
            contact: Some(contact_to_pb(contact)),
        }))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Reply<pb::ListContactsResponse> {
        authorize(&request, "ListContacts", STAFF).await?;
        let r = request.into_inner();
        let filter = ContactFilter {
            email: r.email,
            phone: r.phone,
            external_id: r.external_id,
            name: r.name,
        };
        let (contacts, next_page_token) = self
            .services
            .contacts
            .list(filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListContactsResponse {
            contacts: contacts.into_iter().map(contact_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Reply<pb::UpdateContactResponse> {
        let principal = authorize(&request, "UpdateContact", STAFF).await?;
        let r = request.into_inner();
        let c = r.contact.unwrap_or_default();
        let id = convert::required_uuid("contact.id", &c.id)?;
        let patch = ContactPatch {
            external_id: c.external_id,
            name: c.name,
            email: c.email,
            phone: c.phone,
            vip: c.vip,
            emails: c.emails,
            phones: c.phones,
        };
        let contact = self
            .services
            .contacts
            .update(
                &principal.actor(),
                id,
                patch,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateContactResponse {
            contact: Some(contact_to_pb(contact)),
        }))
    }
}
