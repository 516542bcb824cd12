//! MergeTickets.

use super::*;

impl TicketService {
    /// Merges `sources` into `target`: each source becomes MERGED and points at the target,
    /// and the target's feed shows the sources' activity from then on.
    #[instrument(skip_all, fields(target_id = %target_id, sources = source_ids.len()))]
    pub async fn merge(
        &self,
        principal: &Principal,
        target_id: Uuid,
        source_ids: Vec<Uuid>,
        request_id: &str,
    ) -> ServiceResult<(Ticket, Vec<Ticket>)> {
        let mut v = Violations::new();
        v.line("request_id", request_id, false, MAX_REQUEST_ID_CHARS);
        if source_ids.is_empty() {
            v.add("source_ticket_ids", "must name at least one ticket");
        } else if source_ids.len() > MAX_MERGE_SOURCES {
            v.add(
                "source_ticket_ids",
                format!("must name at most {MAX_MERGE_SOURCES} tickets"),
            );
        }
        let distinct: HashSet<Uuid> = source_ids.iter().copied().collect();
        if distinct.len() != source_ids.len() {
            v.add("source_ticket_ids", "must not repeat a ticket");
        }
        v.finish()?;
        if distinct.contains(&target_id) {
            return Err(ServiceError::FailedPrecondition(
                "a ticket cannot be merged into itself".into(),
            ));
        }
        let mut body = Fingerprint::new().part(target_id.as_bytes());
        for id in &source_ids {
            body = body.part(id.as_bytes());
        }
        let claim = self
            .request_ids
            .claim("merge_tickets", principal, request_id, body, target_id);
        if let Some(claim) = &claim
            && self.store.claimed_request(claim).await?.is_some()
        {
            return self.merged(target_id, &source_ids).await;
        }
        let source_ids = &source_ids;
        let claim = &claim;
        retry_contended(contended(target_id), || async move {
            let target = self.get(TicketKey::Id(target_id)).await?;
            if target.status.is_final() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "target ticket #{} is {} and cannot receive a merge",
                    target.number, target.status
                )));
            }
            let mut sources = Vec::with_capacity(source_ids.len());
            for id in source_ids {
                let source = self.get(TicketKey::Id(*id)).await?;
                match (source.status, source.merged_into_id) {
                    (Status::Merged, Some(into)) => {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "ticket #{} was already merged into {into}",
                            source.number
                        )));
                    }
                    (Status::Closed, _) => {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "ticket #{} is CLOSED and cannot be merged",
                            source.number
                        )));
                    }
                    _ => sources.push(source),
                }
            }
            let at = self.clock.now();
            let payload = EventPayload::Merged {
                target_id,
                target_number: target.number,
                source_ids: sources.iter().map(|s| s.id).collect(),
                source_numbers: sources.iter().map(|s| s.number).collect(),
            };
            let event = |t: &Ticket| {
                NewEvent::about(
                    t,
                    EventKind::TicketsMerged,
                    principal.actor(),
                    Visibility::Internal,
                    payload.clone(),
                    at,
                )
            };
            let mut changeset = Changeset {
                claim: claim.clone(),
                ..Changeset::default()
            };
            let mut next_target = target.clone();
            next_target.updated_at = at;
            changeset.events.push(event(&next_target));
            changeset
                .updates
                .push(TicketUpdate::fields_only(next_target, target.version));
            for source in &sources {
                let mut next = source.clone();
                next.status = Status::Merged;
                next.merged_into_id = Some(target_id);
                next.updated_at = at;
                changeset.events.push(event(&next));
                changeset
                    .updates
                    .push(TicketUpdate::fields_only(next, source.version));
            }
            match self.writer.commit(changeset).await {
                Ok(Committed {
                    replayed: Some(_), ..
                }) => return self.merged(target_id, source_ids).await,
                Ok(committed) => {
                    for (before, after) in sources.iter().zip(committed.tickets.iter().skip(1)) {
                        self.routing.after_change(before, after.clone()).await;
                    }
                    let mut tickets = committed.tickets.into_iter();
                    let target = tickets
                        .next()
                        .ok_or_else(|| not_found(TicketKey::Id(target_id)))?;
                    Ok((target, tickets.collect()))
                }
                // A concurrent change is Contended: read again and re-apply.
                Err(other) => Err(other.into()),
            }
        })
        .await
    }

    /// A finished merge as the tickets are now, for a retry of its request.
    async fn merged(
        &self,
        target_id: Uuid,
        source_ids: &[Uuid],
    ) -> ServiceResult<(Ticket, Vec<Ticket>)> {
        let target = self.get(TicketKey::Id(target_id)).await?;
        let mut sources = Vec::with_capacity(source_ids.len());
        for id in source_ids {
            sources.push(self.get(TicketKey::Id(*id)).await?);
        }
        Ok((target, sources))
    }
}
