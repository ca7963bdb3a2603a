-- The application versions each application ever launched. The latest version of an application
-- (the largest version_timestamp among its own and unclaimed rows) runs the queued work that is
-- pinned to no version. A launch records its version once (relaunching it keeps its timestamp);
-- DBOS.set_latest_application_version moves a version's timestamp to now.
CREATE TABLE application_versions (
    version_id        text PRIMARY KEY,
    version_name      text NOT NULL,
    version_timestamp bigint NOT NULL,
    created_at        bigint NOT NULL,
    application_name  text
);

-- Version names are global: one row per name and owner, and one unclaimed row per name.
CREATE UNIQUE INDEX application_versions_owner_version
    ON application_versions (application_name, version_name)
    WHERE application_name IS NOT NULL;
CREATE UNIQUE INDEX application_versions_unclaimed_version
    ON application_versions (version_name)
    WHERE application_name IS NULL;
CREATE INDEX application_versions_owner_timestamp
    ON application_versions (application_name, version_timestamp DESC);
