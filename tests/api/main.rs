//! The integration suite: a real ticketd over gRPC, on SQLite and on PostgreSQL.

mod activity;
mod admin_updates;
mod attachments;
mod audit;
mod auth;
mod auto_responses;
mod bridge;
mod certs;
mod contacts;
mod conversation_updates;
mod delivery;
mod email;
mod errors;
mod grpc_web;
mod harness;
mod hooks;
mod http;
mod intake;
mod lifecycle;
mod merge;
mod notifications;
mod postgres_only;
mod postgres_restart;
mod private_cluster;
mod read_replicas;
mod receiver;
mod reports;
mod rest;
mod routing;
mod satisfaction;
mod search;
mod security;
mod sla;
mod store;
mod templates;
mod tickets;
mod tls;
mod updates;
mod views;
mod watch;
mod webhooks;
mod workflows;

harness::conformance! {
    tickets: [
        creating_a_ticket_returns_it_open_with_defaults_and_a_number,
        ticket_numbers_stay_unique_under_concurrent_creates,
        a_ticket_is_found_by_id_and_by_number,
        retrying_a_create_with_the_same_request_id_returns_the_first_ticket,
        concurrent_retries_with_one_request_id_create_one_ticket,
        contacts_are_upserted_by_external_id_keeping_known_details,
        filters_select_tickets_by_field,
        assignee_me_lists_the_calling_agents_tickets,
        pages_cover_every_ticket_exactly_once_in_order,
        list_arguments_are_checked,
    ],
    updates: [
        an_update_changes_only_the_masked_fields_and_records_old_and_new,
        a_stale_etag_is_aborted_and_changes_nothing,
        concurrent_updates_without_etags_all_apply,
        the_status_table_is_enforced,
        closed_tickets_refuse_changes_and_replies_but_take_notes,
        update_requests_are_validated_field_by_field,
        changing_the_contact_relinks_or_updates_it,
    ],
    activity: [
        replies_are_public_and_notes_stay_internal,
        replies_need_a_way_to_reach_the_contact,
        attachments_are_kept_with_the_reply_within_limits,
        logged_time_adds_up_on_the_ticket,
        the_feed_pages_in_order,
    ],
    merge: [
        merged_tickets_point_at_the_target_whose_feed_shows_their_activity,
        merges_that_would_lose_or_loop_tickets_are_refused,
        merging_a_target_of_earlier_merges_carries_their_activity_along,
    ],
    auth: [
        calls_without_a_valid_key_are_unauthenticated,
        a_revoked_key_stops_working,
        each_role_reaches_only_its_own_calls,
        keys_are_listed_without_secrets_newest_first,
        key_requests_are_validated,
    ],
    errors: [
        errors_repeat_only_a_bounded_part_of_huge_inputs,
        invalid_create_requests_name_every_bad_field,
        oversized_messages_are_resource_exhausted,
        cancelled_calls_leave_no_partial_writes,
        a_call_past_the_request_timeout_is_deadline_exceeded,
    ],
    lifecycle: [
        health_and_reflection_answer_without_a_key,
        shutdown_reports_not_serving_then_stops_cleanly,
        a_killed_server_loses_no_acknowledged_ticket,
        oversized_requests_are_refused_without_a_memory_spike,
        an_unauthenticated_flood_costs_no_memory_and_keys_are_served_meanwhile,
    ],
    bridge: [
        escalation_keeps_the_whole_transcript_in_order,
        escalating_again_returns_the_same_ticket_with_only_new_messages,
        concurrent_escalations_of_one_conversation_make_one_ticket,
        escalations_are_validated_and_limited,
        only_bots_and_admins_escalate_and_only_gateways_post_messages,
        customer_messages_land_on_their_ticket_and_reopen_it,
        a_message_for_a_closed_ticket_opens_a_linked_follow_up,
        a_message_repeated_within_one_transcript_is_kept_once,
    ],
    delivery: [
        each_reply_reaches_one_subscriber_per_group,
        an_unacknowledged_message_comes_back_after_its_lease,
        a_dropped_stream_hands_its_messages_back_at_once,
        acknowledgements_show_on_the_reply_and_in_the_feed,
        a_failed_delivery_is_reported_with_its_error,
        gateway_keys_can_be_limited_to_channels,
        only_the_lease_holder_may_acknowledge,
        consumer_groups_are_bounded_and_idle_ones_expire,
        a_delivery_made_before_the_stream_dropped_may_still_be_acknowledged,
        messages_left_by_expired_groups_are_not_sent_weeks_late,
        outbound_messages_say_what_they_are_and_email_threads,
    ],
    admin_updates: [
        a_rule_update_changes_the_masked_fields_under_its_etag,
        a_calendar_update_changes_the_masked_fields_under_its_etag,
        a_policy_update_changes_the_masked_fields_under_its_etag,
    ],
    conversation_updates: [
        a_bot_hears_assignment_reply_and_resolution_and_resumes_without_loss,
        keys_hear_only_their_own_sources_and_channels,
        merges_follow_ups_and_tier_escalations_are_told,
    ],
    intake: [
        a_text_from_an_unknown_number_opens_a_routed_ticket_and_the_reply_comes_back,
        intake_finds_contacts_by_address_and_concurrent_first_messages_open_one_ticket,
    ],
    attachments: [attachments_come_out_whole_to_those_who_may_read_them],
    notifications: [agents_hear_of_assignments_and_mentions_on_their_own_stream],
    templates: [templates_are_checked_when_saved_and_render_a_tickets_details],
    contacts: [
        contacts_gain_addresses_under_their_etag_and_intake_finds_them_by_any,
        contacts_page_and_requests_are_checked,
    ],
    email: [
        an_email_opens_a_ticket_and_answers_thread_back_by_each_rule,
        machines_mail_changes_nothing_and_a_bounce_fails_the_delivery,
        emails_are_bounded_and_checked,
        odd_but_real_emails_are_taken_in_rather_than_refused,
    ],
    routing: [
        round_robin_shares_tickets_evenly,
        skill_based_routing_never_assigns_without_the_skills,
        capacity_holds_and_the_backlog_drains_by_priority_then_age,
        vip_contacts_go_to_the_vip_queue_with_a_priority_bump,
        escalating_a_ticket_moves_it_up_a_tier_and_reroutes_it,
        manual_assignment_overrides_and_auto_returns_to_the_queue,
        queues_and_agents_are_administered_with_guards,
        views_show_my_tickets_and_unassigned_ones,
        agents_watch_their_new_assignments_live,
        a_queue_update_changes_the_masked_fields_and_a_stale_etag_is_aborted,
    ],
    sla: [
        new_tickets_get_the_default_targets_of_their_priority,
        only_a_public_reply_meets_first_response,
        waiting_pauses_the_clocks_and_keeps_the_time_left,
        reopening_resumes_resolution_and_a_new_priority_retargets,
        warning_and_breach_fire_once_each_on_the_watch_stream,
        a_new_deadline_wakes_the_timer_before_its_next_poll,
        a_breach_that_passed_while_down_fires_after_a_restart,
        policies_use_business_hours_calendars,
        next_response_restarts_per_customer_message_and_merges_stop_clocks,
    ],
    audit: [
        admin_changes_are_audited_and_outlive_their_objects,
        routing_and_sla_settings_are_audited,
    ],
    security: [
        an_escalation_retried_with_its_request_id_returns_the_first_ticket,
        request_ids_belong_to_the_key_that_sent_them,
        a_request_id_past_its_window_may_be_used_again,
        retried_replies_notes_time_and_merges_apply_once,
        control_characters_are_refused_and_line_breaks_kept_to_multi_line_text,
        a_repeated_update_mask_path_is_refused_before_any_work,
        conversation_metadata_stays_bounded_across_escalations,
        calls_are_authenticated_and_sized_before_their_body_is_decoded,
        a_key_past_its_rate_limit_is_told_when_to_retry,
        open_streams_are_capped_per_key,
        revoking_a_key_ends_its_open_streams,
        bots_speak_only_for_their_own_sources,
        bots_fill_contact_details_but_never_redirect_them,
        gateways_reach_only_conversations_on_their_channels,
        time_for_another_agent_needs_an_admin_and_a_real_agent,
        replicas_starting_together_make_one_bootstrap_key,
        a_start_that_cannot_listen_makes_no_admin_key,
        a_retried_customer_message_lands_once,
        a_page_of_large_tickets_is_cut_short_instead_of_failing,
        assignees_and_queues_must_exist,
        a_message_that_would_balloon_when_decoded_is_refused_unread,
    ],
    tls: [
        grpc_over_tls_serves_calls_and_takes_up_renewed_certificates,
        mutual_tls_admits_only_clients_of_the_client_ca,
    ],
    store: [
        a_lease_holds_until_it_expires_and_then_passes_on,
        concurrent_claimers_never_lease_one_message_twice,
        each_alert_is_claimed_exactly_once_by_racing_timers,
        stream_reads_see_every_committed_event_in_log_order,
        a_request_id_is_claimed_once_per_body_until_it_expires,
        the_capacity_guard_admits_one_of_two_racing_assignments,
        a_stale_version_writes_nothing,
        an_abandoned_write_leaves_nothing_and_a_clean_connection,
        data_from_before_the_bridge_migrations_is_carried_over,
        active_keys_are_told_from_revoked_and_unknown_ones,
    ],
    auto_responses: [
        customers_get_an_acknowledgement_that_is_no_first_response,
        email_from_people_is_acknowledged_and_automatic_mail_is_not,
        after_hours_answers_once_per_closed_period,
        resolution_is_confirmed_within_the_contact_limit,
        auto_responses_are_checked_and_administered,
    ],
    workflows: [
        a_new_ticket_notifies_the_team,
        priority_changed_to_urgent_escalates_a_tier,
        no_agent_reply_within_24_business_hours_follows_up,
        workflows_that_trigger_each_other_stop_at_depth_three,
        runs_past_the_hourly_cap_of_a_ticket_are_stopped_and_recorded,
        a_dry_run_tells_what_would_happen_and_changes_nothing,
        workflows_are_checked_and_administered,
    ],
    grpc_web: [
        browsers_call_the_api_with_grpc_web,
        cross_origin_calls_are_allowed_only_from_configured_origins,
        a_cors_origin_that_is_not_one_stops_the_start,
        malformed_request_bodies_are_invalid_arguments,
    ],
    hooks: [
        a_signed_post_opens_a_ticket_once,
        a_message_hook_posts_to_its_conversation,
        hooks_are_administered_by_admins,
    ],
    read_replicas: [
        consistency_tokens_are_checked_and_only_standbys_issue_them,
    ],
    webhooks: [
        matching_events_arrive_signed_and_in_log_order,
        a_failing_receiver_is_retried_with_backoff_and_events_wait_in_order,
        a_receiver_failing_for_a_day_is_disabled_and_loses_nothing,
        a_slow_receiver_delays_no_other,
        a_rotated_secret_keeps_signing_until_the_overlap_ends,
        an_event_is_redelivered_on_request_over_rest,
        webhook_arguments_are_checked,
        a_killed_server_resumes_its_webhook_backlog_losing_nothing,
        a_paused_webhook_waits_and_a_new_url_starts_afresh,
        an_https_receiver_must_present_a_trusted_certificate,
        webhook_changes_are_audited_and_a_deleted_webhook_stops,
        the_number_of_webhooks_is_bounded,
    ],
    http: [
        watches_stream_as_server_sent_events_and_resume,
        http_errors_are_json_with_the_status_of_their_code,
        a_rate_limited_http_caller_is_told_when_to_retry,
        conversations_stream_to_bots_over_sse,
        email_is_taken_in_over_http,
        gateways_claim_deliveries_with_a_long_poll,
        email_up_to_its_own_limit_is_taken_over_http,
        an_http_call_past_the_request_timeout_is_a_json_504,
    ],
    rest: [
        the_walk_through_works_over_rest,
        rest_errors_carry_their_status_and_fields,
        the_openapi_document_describes_every_route,
    ],
    reports: [
        a_manager_reports_volume_backlog_and_response_times,
        reports_measure_sla_compliance_csat_and_time_logged,
        reports_are_checked,
    ],
    search: [
        search_ranks_matches_and_marks_the_words_that_matched,
        internal_notes_are_searched_for_agents_and_never_for_bots,
        search_pages_and_checks_its_input,
    ],
    satisfaction: [
        customers_rate_resolved_tickets_with_the_token_they_were_sent,
        ratings_are_checked,
    ],
    views: [
        saved_views_list_count_and_show_their_columns,
        agents_keep_personal_views_and_admins_shared_ones,
        views_and_read_masks_are_checked,
        filters_take_times_relative_to_now_and_the_channel,
        filters_read_custom_fields_contact_details_and_has,
    ],
    watch: [
        a_watch_replays_from_its_cursor_then_goes_live,
        watch_filters_select_by_event_ticket_and_assignee,
        reconnecting_watchers_miss_nothing_during_writes,
        streams_end_with_their_resume_point_on_shutdown,
        cancelled_streams_leave_nothing_behind,
        a_watcher_that_stops_reading_is_told_where_to_resume,
    ],
}

/// Start-up, without a database of its own.
mod start {
    #[tokio::test]
    async fn an_unreachable_postgres_server_is_named_at_once() {
        crate::lifecycle::an_unreachable_postgres_server_is_named_at_once().await;
    }
}

/// Tests that need a PostgreSQL server (several replicas, a database outage).
mod postgres_server {
    macro_rules! postgres_only {
        ($($test:ident),* $(,)?) => {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(backend) = crate::harness::Backend::postgres() {
                    crate::postgres_only::$test(backend).await;
                }
            })*
        };
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn capacity_holds_under_concurrent_escalations_on_two_replicas() {
        if let Some(backend) = crate::harness::Backend::postgres() {
            crate::routing::capacity_holds_under_concurrent_escalations_on_two_replicas(backend)
                .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_search_configuration_is_a_setting() {
        if let Some(backend) = crate::harness::Backend::postgres() {
            crate::search::the_search_configuration_is_a_setting(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_fire_each_breach_once() {
        if let Some(backend) = crate::harness::Backend::postgres() {
            crate::sla::two_replicas_fire_each_breach_once(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_database_is_unavailable_then_recovers_without_a_restart() {
        // The test runs a cluster of its own; the configured server says "run it".
        if crate::harness::Backend::postgres().is_some() {
            crate::postgres_restart::a_restarted_database_is_unavailable_then_recovers_without_a_restart()
                .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_go_to_a_standby_and_never_miss_the_callers_writes() {
        // A primary and a standby of its own; the configured server says "run it".
        if crate::harness::Backend::postgres().is_some() {
            crate::read_replicas::reads_go_to_a_standby_and_never_miss_the_callers_writes().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_over_tls_verifies_the_server() {
        // A cluster of its own with TLS on; the configured server says "run it".
        if crate::harness::Backend::postgres().is_some() {
            crate::tls::postgres_over_tls_verifies_the_server().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_a_transaction_in_flight_holds_back_later_events() {
        if let Some(backend) = crate::harness::Backend::postgres() {
            crate::store::a_transaction_in_flight_holds_back_later_events(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhooks_are_delivered_by_one_of_two_replicas_and_taken_over() {
        if let Some(backend) = crate::harness::Backend::postgres() {
            crate::webhooks::one_of_two_replicas_delivers_and_the_other_takes_over(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workflow_timers_outlive_their_replica_and_fire_once_across_two() {
        if let Some(backend) = crate::harness::Backend::postgres() {
            crate::workflows::timers_outlive_their_replica_and_fire_once_across_two(backend).await;
        }
    }

    postgres_only! {
        a_database_outage_is_unavailable_and_heals_without_a_restart,
        replicas_starting_together_migrate_once_and_share_numbering,
        a_watcher_never_skips_a_transaction_still_in_flight,
        replicas_share_deliveries_and_watches,
        a_statement_past_its_timeout_fails_and_frees_its_connection,
        a_watcher_finds_events_held_back_by_a_long_transaction,
        a_key_revoked_on_one_replica_ends_its_streams_on_another,
    }
}
