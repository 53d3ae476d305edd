-- The functions that run as the schema's owner (SECURITY DEFINER) named their tables without a
-- schema, under the search path of the migration (`"$user", public`). PostgreSQL searches the
-- caller's temporary schema before any path that does not name `pg_temp`, so a caller allowed
-- to write events (the web service as `pulse_tenant`, an outside writer) could create a
-- temporary `event_topics` and have the owner's trigger write into it, and run a trigger of
-- its own there as the owner: every tenant's rows, every policy.
--
-- Each such function now searches the system catalog, then its own schema, then `pg_temp`
-- last, as PostgreSQL's "Writing SECURITY DEFINER Functions Safely" advises. A function added
-- later must say the same; `db::schema` checks every one.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS signature, n.nspname AS schema
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE p.prosecdef AND p.proname LIKE 'pulse\_%' AND n.nspname = current_schema()
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                       f.signature, f.schema);
    END LOOP;
END
$$;
