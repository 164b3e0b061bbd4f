-- The database roles of docker-compose.yml, which mounts this file into the postgres image's
-- /docker-entrypoint-initdb.d: the image runs it once, as its superuser in the database
-- jiraconnect, when it initialises an empty data volume. It is the production setup of README.md
-- ("Database roles") with evaluation passwords, which docker-compose.yml repeats in its URLs.
--
-- jiraconnect_owner owns the database and with it the schema (public belongs to the database
-- owner): `jiraconnect migrate` runs as it. jiraconnect_app is what the API and the worker log in
-- as; the migrations grant it its privileges, and the processes refuse to start as anything that
-- could bypass row-level security.
CREATE ROLE jiraconnect_owner LOGIN PASSWORD 'jiraconnect_owner'
    NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;
CREATE ROLE jiraconnect_app LOGIN PASSWORD 'jiraconnect_app'
    NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;
ALTER DATABASE jiraconnect OWNER TO jiraconnect_owner;
