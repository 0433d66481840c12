-- pgGearman: Gearman client functions for PostgreSQL, in PL/Python on gearman-gateway's client library.
--
--   CREATE EXTENSION plpython3u;
--   \i contrib/pggearman/pggearman.sql          -- or: psql -d DB -f contrib/pggearman/pggearman.sql
--   SELECT gman_servers_set('localhost');
--   SELECT gman_do('reverse', 'Hello World!');
--
-- The server's Python must find the package gearman_gateway: PYTHONPATH in the PostgreSQL server's environment,
-- or the setting pggearman.python_path made by a superuser (ALTER DATABASE db SET pggearman.python_path =
-- '/opt/gearman-gateway', or ALTER ROLE); a SET in the session is ignored.
-- docs/postgresql.md describes every function, the SQLSTATEs of its errors and the trigger.
-- Running the file again replaces the functions (CREATE OR REPLACE).

-- The shared code, run once per session: it leaves the session's state and helpers in GD['pggearman'].
CREATE OR REPLACE FUNCTION gman__init() RETURNS void LANGUAGE plpython3u AS $py$
import math
import os
import sys

if 'pggearman' in GD:
    return None

# pggearman.python_path as ALTER DATABASE / ALTER ROLE ... SET stored it, which only a superuser may do for this
# setting: a session's own SET must not choose the code that this untrusted language imports into the server.
PYTHON_PATH = '''
SELECT substr(c, length('pggearman.python_path=') + 1) AS path
FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS c
WHERE c LIKE 'pggearman.python\\_path=%'
  AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
  AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))
ORDER BY s.setrole <> 0 DESC, s.setdatabase <> 0 DESC  -- PostgreSQL's precedence: the most specific first
LIMIT 1
'''
rows = plpy.execute(PYTHON_PATH)
setting = rows[0]['path'] if rows else ''
for entry in reversed(setting.split(os.pathsep)):
    if entry and entry not in sys.path:
        sys.path.insert(0, entry)
try:
    from gearman_gateway import Client
    from gearman_gateway.client import (
        GearmanConnectionError, GearmanError, GearmanTimeout, JobException, JobFailed, ServerError,
    )
    from gearman_gateway.clientlib.links import Backoff, parse_servers
except ImportError as exc:
    plpy.error(
        f'pggearman: cannot import the gearman_gateway client library ({exc})',
        hint="Set PYTHONPATH in the PostgreSQL server's environment, or (as a superuser) ALTER DATABASE ... SET "
        'pggearman.python_path, to the directory that holds gearman_gateway (docs/postgresql.md).',
        sqlstate='YG000',
    )

DEFAULT_SERVERS = 'localhost:4730'
DEFAULT_TIMEOUT = 30.0
#: SQLSTATE per error of the client library, most specific first (docs/postgresql.md lists them).
SQLSTATES = (
    (JobException, 'YG002'),  # WORK_EXCEPTION
    (JobFailed, 'YG001'),  # WORK_FAIL, or the server dropped the job
    (ServerError, 'YG003'),  # the server refused the job (ERROR packet)
    (GearmanTimeout, 'YG004'),
    (GearmanConnectionError, 'YG005'),
    (GearmanError, 'YG000'),
)


class PgGearman:
    """One database session's Gearman client: created on first use, kept (with its connections) until the
    server list changes or the session ends."""

    def __init__(self):
        self.servers = DEFAULT_SERVERS
        self.timeout = DEFAULT_TIMEOUT
        self._client = None
        self._statements = {}  # table oid -> its to_json statement (a table made again has a new oid)
        self._is_deferred = None  # the statement that tells whether a trigger fires at commit

    def client(self):
        if self._client is None:
            self._client = Client(
                self.servers,
                timeout=self.timeout,
                exceptions=True,
                client_id=f'pggearman-{os.getpid()}',
                connect_timeout=min(5.0, self.timeout),
                backoff=Backoff(0.05, 1.0),  # a job server that is back is tried again within a second
            )
        return self._client

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def set_servers(self, servers):
        try:
            parsed = parse_servers(servers or '')
        except ValueError as exc:
            plpy.error(f'gman_servers_set: {exc}', sqlstate='22023')
        self.close()
        self.servers = servers.strip() if parsed else DEFAULT_SERVERS

    def set_timeout(self, seconds):
        if seconds is None or not math.isfinite(seconds) or seconds <= 0:
            plpy.error(f'gman_set_timeout: the timeout must be a positive, finite number of seconds, not {seconds}',
                       sqlstate='22023')
        self.timeout = float(seconds)
        if self._client is not None:
            self._client.set_timeout(self.timeout)
            self._client.connect_timeout = min(5.0, self.timeout)

    def call(self, what, method, *args):
        """Run one client call; a client library error becomes an SQL error with its SQLSTATE."""
        try:
            return getattr(self.client(), method)(*args)
        except GearmanError as exc:
            if isinstance(exc, GearmanConnectionError):
                self.close()  # start the next call on fresh connections
            sqlstate = next(code for kind, code in SQLSTATES if isinstance(exc, kind))
            if isinstance(exc, GearmanTimeout):
                message = f'{what}: no result within {self.timeout:g} s (gman_set_timeout)'
            else:
                message = f'{what}: {exc}'
            plpy.error(message, detail=f'job servers: {self.servers}', sqlstate=sqlstate)

    def do(self, what, method, function, workload):
        """A foreground job: the result as bytes for a bytea workload, as text for a text one."""
        result = self.call(what, method, function, workload)
        if isinstance(workload, bytes):
            return result
        try:
            return result.decode('utf-8')
        except UnicodeDecodeError as exc:
            plpy.error(f'{what}: the result of {function!r} is not UTF-8 text ({exc.reason})',
                       hint='Pass the workload as bytea to get the result as bytea.', sqlstate='22021')

    def submit_row(self, td):
        """The trigger: the row as a background job, from a deferred constraint trigger only, as a trigger that
        fires before the commit would submit jobs for rows that a rollback takes back."""
        if self._is_deferred is None:  # asked per row, not cached: a trigger may be made again with the same name
            self._is_deferred = plpy.prepare(
                'SELECT tgdeferrable AND tginitdeferred AS deferred FROM pg_catalog.pg_trigger '
                'WHERE tgrelid = $1 AND tgname = $2',
                ['oid', 'name'],
            )
        rows = plpy.execute(self._is_deferred, [td['relid'], td['name']])
        if not (rows and rows[0]['deferred']) or td['level'] != 'ROW' or len(td['args'] or ()) != 1:
            plpy.error(
                f"gman_trigger_background: trigger {td['name']!r} on {td['table_name']} must be a CONSTRAINT TRIGGER "
                '... DEFERRABLE INITIALLY DEFERRED FOR EACH ROW with one argument, the function name',
                hint='Jobs are submitted at commit only by a deferred trigger; '
                'another would submit them for rows that a rollback takes back.',
                sqlstate='39P01',
            )
        self.call('gman_trigger_background', 'do_background', td['args'][0], self.row_json(td))

    def row_json(self, td):
        """The trigger's row as PostgreSQL's own to_json makes it (numeric, timestamps, json columns exact)."""
        table = plpy.quote_ident(td['table_schema']) + '.' + plpy.quote_ident(td['table_name'])
        plan = self._statements.get(td['relid'])
        if plan is None:
            plan = self._statements[td['relid']] = plpy.prepare(f'SELECT to_json($1::{table})::text AS j', [table])
        row = td['old'] if td['event'] == 'DELETE' else td['new']
        return plpy.execute(plan, [row])[0]['j']


GD['pggearman'] = PgGearman()
$py$;

CREATE OR REPLACE FUNCTION gman_servers_set(servers text) RETURNS void LANGUAGE plpython3u AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
GD['pggearman'].set_servers(servers)
$py$;

CREATE OR REPLACE FUNCTION gman_set_timeout(seconds double precision) RETURNS void LANGUAGE plpython3u AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
GD['pggearman'].set_timeout(seconds)
$py$;

-- Foreground jobs: wait for the worker's result. text in, text out; bytea in, bytea out.
CREATE OR REPLACE FUNCTION gman_do(function text, workload text) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].do('gman_do', 'do', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do(function text, workload bytea) RETURNS bytea
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].do('gman_do', 'do', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_high(function text, workload text) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].do('gman_do_high', 'do_high', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_high(function text, workload bytea) RETURNS bytea
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].do('gman_do_high', 'do_high', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_low(function text, workload text) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].do('gman_do_low', 'do_low', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_low(function text, workload bytea) RETURNS bytea
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].do('gman_do_low', 'do_low', function, workload)
$py$;

-- Background jobs: return the job handle as soon as the job server has the job.
CREATE OR REPLACE FUNCTION gman_do_background(function text, workload text) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].call('gman_do_background', 'do_background', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_background(function text, workload bytea) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].call('gman_do_background', 'do_background', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_high_background(function text, workload text) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].call('gman_do_high_background', 'do_high_background', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_high_background(function text, workload bytea) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].call('gman_do_high_background', 'do_high_background', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_low_background(function text, workload text) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].call('gman_do_low_background', 'do_low_background', function, workload)
$py$;

CREATE OR REPLACE FUNCTION gman_do_low_background(function text, workload bytea) RETURNS text
LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
return GD['pggearman'].call('gman_do_low_background', 'do_low_background', function, workload)
$py$;

-- What the job server knows of a job: a finished (or never submitted) job is not known.
CREATE OR REPLACE FUNCTION gman_job_status(
    handle text, OUT known boolean, OUT running boolean, OUT numerator bigint, OUT denominator bigint
) LANGUAGE plpython3u STRICT AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
status = GD['pggearman'].call('gman_job_status', 'job_status', handle)
return (status.known, status.running, status.numerator, status.denominator)
$py$;

-- Trigger: one background job per row, its workload the row as JSON (the old row for DELETE). Attach it as a
-- deferred constraint trigger so the job is submitted at commit and a rolled-back change submits nothing:
--   CREATE CONSTRAINT TRIGGER signup_mail AFTER INSERT OR UPDATE ON users
--       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gman_trigger_background('send_mail');
CREATE OR REPLACE FUNCTION gman_trigger_background() RETURNS trigger LANGUAGE plpython3u AS $py$
if 'pggearman' not in GD:
    plpy.execute('SELECT gman__init()')
GD['pggearman'].submit_row(TD)
return None
$py$;
