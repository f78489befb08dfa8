-- Channel options Rotor never implemented are now refused instead of accepted and ignored
-- (delta compression, tag filters, subscribe stream proxies; see COMPATIBILITY.md). Stored
-- namespaces and project settings lose them here, so every project's config still loads.
-- They never changed what a tenant did, so removing them changes no behaviour; the projects
-- touched get a new config version, so their tenants receive the config without them.

CREATE TEMPORARY TABLE refused_option_projects (id TEXT PRIMARY KEY) ON COMMIT DROP;

WITH touched AS (
    UPDATE namespaces
       SET options = options - 'allowed_delta_types' - 'delta_publish' - 'allow_tags_filter'
                     - 'subscribe_stream_proxy_enabled' - 'subscribe_stream_proxy_name'
                     - 'subscribe_stream_proxy_bidirectional',
           updated_at = now()
     WHERE options ?| ARRAY['allowed_delta_types', 'delta_publish', 'allow_tags_filter',
                            'subscribe_stream_proxy_enabled', 'subscribe_stream_proxy_name',
                            'subscribe_stream_proxy_bidirectional']
    RETURNING project_id)
INSERT INTO refused_option_projects SELECT DISTINCT project_id FROM touched
    ON CONFLICT DO NOTHING;

WITH touched AS (
    UPDATE projects
       SET settings = jsonb_set(settings, '{without_namespace}',
               (settings -> 'without_namespace') - 'allowed_delta_types' - 'delta_publish'
               - 'allow_tags_filter' - 'subscribe_stream_proxy_enabled'
               - 'subscribe_stream_proxy_name' - 'subscribe_stream_proxy_bidirectional')
     WHERE jsonb_typeof(settings -> 'without_namespace') = 'object'
       AND (settings -> 'without_namespace') ?| ARRAY['allowed_delta_types', 'delta_publish',
               'allow_tags_filter', 'subscribe_stream_proxy_enabled',
               'subscribe_stream_proxy_name', 'subscribe_stream_proxy_bidirectional']
    RETURNING id)
INSERT INTO refused_option_projects SELECT id FROM touched ON CONFLICT DO NOTHING;

WITH touched AS (
    UPDATE projects
       SET settings = settings #- '{channel_proxy,subscribe_stream}'
     WHERE jsonb_typeof(settings -> 'channel_proxy') = 'object'
       AND (settings -> 'channel_proxy') ? 'subscribe_stream'
    RETURNING id)
INSERT INTO refused_option_projects SELECT id FROM touched ON CONFLICT DO NOTHING;

UPDATE projects
   SET config_version = config_version + 1, updated_at = now()
 WHERE id IN (SELECT id FROM refused_option_projects);
