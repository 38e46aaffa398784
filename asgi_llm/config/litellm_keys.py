"""The config keys LiteLLM's proxy knows, per section, from its "All settings" page.

A key of ours is used; a key LiteLLM knows that we do not support is listed in the
start-up warning; a key in a *checked* section that neither knows is a typo, and
stops start-up with a did-you-mean (``general_settings.master_kye`` would otherwise
start a gateway with no authentication).

Sections LiteLLM leaves open are not checked: ``litellm_settings`` sets any
attribute of the ``litellm`` module, ``litellm_params`` passes unknown keys to the
provider, and ``model_info``, ``environment_variables`` and ``metadata`` are free-form.
"""

from __future__ import annotations

TOP_LEVEL = frozenset({
    "model_list", "litellm_settings", "general_settings", "router_settings", "environment_variables",
    "callback_settings", "guardrails", "credential_list", "mcp_servers", "mcp_tools", "include", "prompts",
    "assistant_settings", "files_settings", "finetune_settings", "vector_store_registry", "search_tools",
    "pass_through_endpoints", "model_group_alias",
})

GENERAL_SETTINGS = frozenset({
    "completion_model", "store_prompts_in_spend_logs", "forward_client_headers_to_llm_api", "disable_spend_logs",
    "disable_spend_updates", "disable_master_key_return", "disable_retry_on_max_parallel_request_limit_error",
    "disable_reset_budget", "disable_adding_master_key_hash_to_db", "disable_responses_id_security",
    "enable_jwt_auth", "enforce_user_param", "reject_clientside_metadata_tags", "allowed_routes",
    "key_management_system", "master_key", "maximum_spend_logs_retention_period",
    "maximum_spend_logs_retention_interval", "user_mcp_management_mode", "database_url",
    "database_connection_pool_limit", "database_connection_timeout", "allow_requests_on_db_unavailable",
    "custom_auth", "max_parallel_requests", "global_max_parallel_requests", "infer_model_from_keys",
    "background_health_checks", "health_check_interval", "alerting", "alerting_threshold",
    "use_client_credentials_pass_through_routes", "health_check_details", "public_routes", "alert_types",
    "enforced_params", "enable_oauth2_auth", "use_x_forwarded_for", "service_account_settings",
    "image_generation_model", "store_model_in_db", "supported_db_objects", "max_request_size_mb",
    "max_response_size_mb", "proxy_budget_rescheduler_min_time", "proxy_budget_rescheduler_max_time",
    "proxy_batch_write_at", "proxy_batch_polling_interval", "alerting_args", "custom_key_generate", "allowed_ips",
    "embedding_model", "default_team_disabled", "alert_to_webhook_url", "key_management_settings",
    "allow_user_auth", "user_api_key_cache_ttl", "disable_prisma_schema_update", "litellm_key_header_name",
    "moderation_model", "custom_sso", "allow_client_side_credentials", "admin_only_routes", "use_azure_key_vault",
    "use_google_kms", "spend_report_frequency", "ui_access_mode", "litellm_jwtauth", "litellm_license",
    "oauth2_config_mappings", "pass_through_endpoints", "enable_oauth2_proxy_auth", "forward_openai_org_id",
    "otel", "disable_end_user_cost_tracking", "use_shared_health_check",
})

ROUTER_SETTINGS = frozenset({
    "routing_strategy", "redis_host", "redis_password", "redis_port", "redis_db", "redis_url",
    "enable_pre_call_check", "enable_pre_call_checks", "content_policy_fallbacks", "fallbacks",
    "context_window_fallbacks", "default_fallbacks", "enable_tag_filtering", "tag_filtering_match_any",
    "cooldown_time", "disable_cooldowns", "retry_policy", "allowed_fails", "allowed_fails_policy",
    "default_max_parallel_requests", "default_priority", "polling_interval", "max_fallbacks",
    "default_litellm_params", "timeout", "stream_timeout", "debug_level", "client_ttl", "cache_kwargs",
    "routing_strategy_args", "model_group_alias", "num_retries", "caching_groups", "alerting_config",
    "assistants_config", "set_verbose", "retry_after", "provider_budget_config", "model_group_retry_policy",
    "cache_responses", "router_general_settings", "optional_pre_call_checks", "deployment_affinity_ttl_seconds",
    "ignore_invalid_deployments", "search_tools", "guardrail_list", "max_parallel_requests",
})

MODEL_ENTRY = frozenset({"model_name", "litellm_params", "model_info"})

# sections whose unknown keys stop start-up, by their path in the config; `None`: asgi-llm's own section,
# where every key is ours
CHECKED: dict[str, frozenset[str] | None] = {
    "": TOP_LEVEL,
    "general_settings": GENERAL_SETTINGS,
    "router_settings": ROUTER_SETTINGS,
    "model_list[]": MODEL_ENTRY,
    "general_settings.upstream": None,
    "prompts": None,
    "keys[]": None,
    "teams[]": None,
}
