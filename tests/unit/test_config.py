"""Loading and validating the config file: the example, broken configs, derived defaults, env overrides."""

from __future__ import annotations

import json
import string
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.config import SUMMARY_PLACEHOLDERS, Config, config_from_dict, env_value, load_config
from apexcal.errors import ConfigError, Problem
from apexcal.ical.mapping import MappingOptions, map_activity
from tests.unit.ical.factories import TYPES, activity

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"

MINIMAL = """\
[source]
organization_id = 27
"""

TARGET = """\
[[targets]]
name = "jane"
url = "https://dav.example.com/jane/"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    """Write a config file and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The (key path, message) of every problem loading ``path`` reports."""
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return [(p.path, p.message) for p in info.value.problems]


class TestExampleConfig:
    def test_example_validates_as_is(self) -> None:
        """config.example.toml loads without secrets and keeps the documented values."""
        config = load_config(EXAMPLE, env={})
        assert config.path == EXAMPLE
        assert config.source.organization_id == 27
        assert config.sync.interval == timedelta(minutes=5)
        assert config.targets[0].filter == {
            "assigned_to_user_id": 46,
            "activity_type": ["call", "meeting", "task"],
        }
        assert config.feeds[0].window.future_days == 365
        assert config.server is not None
        assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)

    def test_example_sets_every_key_of_every_table(self) -> None:
        """Every field of every model appears in the example (set or commented), so every key is documented."""
        text = EXAMPLE.read_text(encoding="utf-8")
        config = load_config(EXAMPLE, env={})
        tables = [
            config.source,
            config.state,
            config.sync,
            config.mapping,
            config.targets[0],
            config.feeds[0],
            config.feeds[0].window,
            config.server,
            config.log,
        ]
        for table in tables:
            for key in type(table).model_fields:
                assert f"{key} =" in text or f".{key}]" in text, key


BROKEN = [
    (
        "unknown key",
        MINIMAL + '[sync]\nintervall = "5m"\n',
        "sync.intervall",
        "unknown key (did you mean 'interval'?)",
    ),
    ("unknown table", MINIMAL + "[sinks]\nx = 1\n", "sinks", "unknown key"),
    (
        "bad target url",
        MINIMAL + '[[targets]]\nname = "jane"\nurl = "dav.example.com/jane"\n',
        "targets[0].url",
        "not a valid URL",
    ),
    (
        "password in url",
        MINIMAL + '[[targets]]\nname = "jane"\nurl = "https://jane:pw-in-url@dav.example.com/"\n',
        "targets[0].url",
        "must not contain a password",
    ),
    (
        "ftp base url",
        '[source]\norganization_id = 27\nbase_url = "ftp://api.example.com"\n',
        "source.base_url",
        "scheme must be http or https",
    ),
    (
        "bad duration",
        MINIMAL + '[sync]\ninterval = "5 minutes"\n',
        "sync.interval",
        "not a duration",
    ),
    (
        "zero interval",
        MINIMAL + '[sync]\ninterval = "0s"\n',
        "sync.interval",
        "must be longer than 0s",
    ),
    (
        "bad zone",
        '[source]\norganization_id = 27\ntimezone = "Mars/Olympus_Mons"\n',
        "source.timezone",
        "not a known IANA time zone",
    ),
    (
        "duplicate target",
        MINIMAL + TARGET + TARGET,
        "targets[1].name",
        "duplicate name 'jane': already used by targets[0]",
    ),
    (
        "feed named like target",
        MINIMAL + TARGET + '[[feeds]]\nname = "jane"\npath = "/tmp/j.ics"\n',
        "feeds[0].name",
        "duplicate name 'jane'",
    ),
    (
        "duplicate feed path",
        MINIMAL
        + '[[feeds]]\nname = "a"\npath = "/tmp/f.ics"\n[[feeds]]\nname = "b"\npath = "/tmp/./f.ics"\n',
        "feeds[1].path",
        "duplicate path",
    ),
    (
        "empty feed path",
        MINIMAL + '[[feeds]]\nname = "f"\npath = ""\n',
        "feeds[0].path",
        "must be the path of a file",
    ),
    (
        "directory as token file",
        '[source]\norganization_id = 27\ntoken_file = "/run/credentials/"\n',
        "source.token_file",
        "must be the path of a file",
    ),
    (
        "per-user name collision",
        MINIMAL
        + '[[feeds]]\nname = "team"\npath = "/tmp/t.ics"\nper_user = true\n[[targets]]\nname = "team-46"\nurl = "https://d.example/"\n',
        "targets[0].name",
        "'team-46' collides with the per-user feeds of feeds[0]",
    ),
    (
        "bad name",
        MINIMAL + '[[targets]]\nname = "jane doe"\nurl = "https://d.example/"\n',
        "targets[0].name",
        "not a valid name",
    ),
    (
        "bad colour",
        MINIMAL + '[[feeds]]\nname = "team"\npath = "/tmp/t.ics"\ncolor = "blue"\n',
        "feeds[0].color",
        "'#RRGGBB'",
    ),
    (
        "bad filter key",
        MINIMAL + TARGET + "[targets.filter]\nowner_id = 46\n",
        "targets[0].filter.owner_id",
        "unknown filter key",
    ),
    (
        "bad filter type",
        MINIMAL + TARGET + '[targets.filter]\nassigned_to_user_id = "46"\n',
        "targets[0].filter.assigned_to_user_id",
        "must be an integer",
    ),
    (
        "bad filter date",
        MINIMAL + TARGET + '[targets.filter]\nstart_date = { "$gte" = "April" }\n',
        "targets[0].filter.start_date.$gte",
        "must be a date",
    ),
    (
        "bad filter operator",
        MINIMAL + TARGET + '[targets.filter]\nstart_date = { "$after" = 2025-04-01 }\n',
        "targets[0].filter.start_date.$after",
        "unknown filter key",
    ),
    (
        "bad type key",
        MINIMAL + TARGET + '[targets.filter]\nactivity_type = ["call", "Meeting"]\n',
        "targets[0].filter.activity_type",
        "'Meeting' is not an activity type key",
    ),
    (
        "bad done",
        MINIMAL + TARGET + '[targets.filter]\ndone = "yes"\n',
        "targets[0].filter.done",
        "must be true or false",
    ),
    (
        "bad privacy",
        MINIMAL + TARGET + 'privacy = "secret"\n',
        "targets[0].privacy",
        "must be one of: full, public, busy",
    ),
    (
        "bad tasks_as",
        MINIMAL + '[[feeds]]\nname = "t"\npath = "/tmp/t.ics"\ntasks_as = "tasks"\n',
        "feeds[0].tasks_as",
        "must be one of: todos, events",
    ),
    (
        "missing org id",
        '[source]\ntimezone = "UTC"\n',
        "source.organization_id",
        "missing required key",
    ),
    ("missing source", "[sync]\n", "source", "missing required key"),
    (
        "negative page size",
        "[source]\norganization_id = 27\npage_size = -5\n",
        "source.page_size",
        "must be at least 1",
    ),
    (
        "org id as text",
        '[source]\norganization_id = "27"\n',
        "source.organization_id",
        "must be an integer",
    ),
    (
        "bad summary placeholder",
        MINIMAL + '[mapping]\nsummary = "{subject} for {owner}"\n',
        "mapping.summary",
        "unknown placeholder {owner}",
    ),
    (
        "attribute in template",
        MINIMAL + '[mapping]\nsummary = "{subject.__class__}"\n',
        "mapping.summary",
        "not a plain name",
    ),
    (
        "bad url placeholder",
        MINIMAL + '[mapping]\nactivity_url = "https://app/{uuid}"\n',
        "mapping.activity_url",
        "unknown placeholder {uuid}",
    ),
    (
        "bad component",
        MINIMAL + '[mapping.components]\ncall = "journal"\n',
        "mapping.components.call",
        "must be one of: event, todo",
    ),
    (
        "username without password",
        MINIMAL + TARGET + 'username = "jane"\n',
        "targets[0]",
        "username is set but there is no password",
    ),
    (
        "password twice",
        MINIMAL + TARGET + 'username = "jane"\npassword = "pw-pw-pw"\npassword_file = "/x"\n',
        "targets[0]",
        "set only one of password and password_file",
    ),
    (
        "token twice",
        '[source]\norganization_id = 27\ntoken = "t-t-t-t"\ntoken_file = "/x"\n',
        "source",
        "set only one of token and token_file",
    ),
    (
        "bad state url",
        MINIMAL + '[state]\nurl = "mysql://db/apexcal"\n',
        "state.url",
        "not a database URL",
    ),
    (
        "relative sqlite url",
        MINIMAL + '[state]\nurl = "sqlite://state.db"\n',
        "state.url",
        "three slashes",
    ),
    ("bad listen", MINIMAL + '[server]\nlisten = "localhost"\n', "server.listen", "not host:port"),
    (
        "big port",
        MINIMAL + '[server]\nlisten = "127.0.0.1:70000"\n',
        "server.listen",
        "not host:port",
    ),
    (
        "share over one",
        MINIMAL + "[sync]\nmax_delete_share = 1.5\n",
        "sync.max_delete_share",
        "must be at most 1.0",
    ),
    (
        "bad policy",
        MINIMAL + '[sync]\nconflict_policy = "last-wins"\n',
        "sync.conflict_policy",
        "must be one of: crm-wins, calendar-wins, newest-wins",
    ),
    (
        "negative window",
        MINIMAL + '[[feeds]]\nname = "t"\npath = "/tmp/t.ics"\nwindow = { past_days = -1 }\n',
        "feeds[0].window.past_days",
        "must be at least 0",
    ),
    ("boolean duration", MINIMAL + "[sync]\ninterval = true\n", "sync.interval", "not a duration"),
    (
        "bad log level",
        MINIMAL + '[log]\nlevel = "loud"\n',
        "log.level",
        "must be one of: debug, info",
    ),
    ("targets not a list", 'targets = "jane"\n' + MINIMAL, "targets", "must be a list"),
]


class TestBrokenConfigs:
    @pytest.mark.parametrize(
        ("text", "path", "message"),
        [row[1:] for row in BROKEN],
        ids=[row[0] for row in BROKEN],
    )
    def test_each_mistake_is_reported_with_its_key_path(
        self, tmp_path: Path, text: str, path: str, message: str
    ) -> None:
        """A single mistake gives exactly one problem naming the file, the key path and what is wrong."""
        file = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_config(file, env={})
        assert len(info.value.problems) == 1, info.value.problems
        problem = info.value.problems[0]
        assert problem.file == str(file)
        assert problem.path == path
        assert message in problem.message
        assert str(problem) == f"{file}: {path}: {problem.message}"

    def test_every_problem_is_reported_at_once(self, tmp_path: Path) -> None:
        """Several mistakes across tables are all listed in one ConfigError, in file order."""
        file = write(
            tmp_path,
            """\
            [source]
            organization_id = 0
            timezone = "Nowhere/Land"
            [sync]
            interval = "soon"
            [[targets]]
            name = "a"
            url = "https://d.example/a/"
            [[targets]]
            name = "b"
            url = "gopher://d.example/b/"
            colour = "#FFFFFF"
            [[targets]]
            name = "a"
            url = "https://d.example/c/"
            """,
        )
        paths = [path for path, _ in problems_of(file)]
        assert paths == [
            "source.organization_id",
            "source.timezone",
            "sync.interval",
            "targets[1].url",
            "targets[1].colour",
            "targets[2].name",
        ]

    def test_missing_file_is_one_line(self, tmp_path: Path) -> None:
        """A file that does not exist gives one problem: `FILE: file not found`."""
        with pytest.raises(ConfigError) as info:
            load_config("no-such-dir/config.toml", env={})
        assert str(info.value) == "no-such-dir/config.toml: file not found"

    def test_toml_syntax_error_names_line_and_column(self, tmp_path: Path) -> None:
        """A TOML syntax error gives one problem with its line and column."""
        file = write(tmp_path, '[source]\norganization_id = 27\ntimezone = "UTC\n')
        with pytest.raises(ConfigError) as info:
            load_config(file, env={})
        assert len(info.value.problems) == 1
        assert str(info.value).startswith(f"{file}: invalid TOML at line 3, column ")

    def test_binary_file_is_refused_cleanly(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 gives one problem instead of a decode traceback."""
        file = tmp_path / "config.toml"
        file.write_bytes(b"\xff\xfe[source]\n")
        assert problems_of(file)[0][1].startswith("not UTF-8 text")

    def test_directory_is_refused_cleanly(self, tmp_path: Path) -> None:
        """Passing a directory gives one problem instead of an OSError."""
        assert problems_of(tmp_path) == [("", "is a directory, not a config file")]


class TestDerivedValues:
    def test_defaults_fill_every_optional_table(self) -> None:
        """A config with only an organization id gets the documented defaults."""
        config = config_from_dict({"source": {"organization_id": 27}})
        assert config.source.base_url == "https://api.achieveapex.com"
        assert config.source.page_size == 100
        assert config.source.overlap == timedelta(minutes=2)
        assert config.sync.reconcile_interval == timedelta(hours=1)
        assert config.sync.max_delete_share == 0.5
        assert config.mapping.components == {"task": "todo"}
        assert config.mapping.max_note_bytes == 65536
        assert config.targets == []
        assert config.feeds == []
        assert config.server is None
        assert config.log.level == "info"
        assert config.path is None

    def test_uid_domain_defaults_to_the_api_host(self) -> None:
        """The UID domain is the host of base_url unless uid_domain is set."""
        config = config_from_dict(
            {"source": {"organization_id": 1, "base_url": "http://127.0.0.1:9999/api"}}
        )
        assert config.source.effective_uid_domain == "127.0.0.1"
        config = config_from_dict(
            {"source": {"organization_id": 1, "uid_domain": "crm.example.org"}}
        )
        assert config.source.effective_uid_domain == "crm.example.org"

    def test_stale_after_defaults_to_three_intervals(self) -> None:
        """The health bound is three sync intervals unless set."""
        config = config_from_dict(
            {"source": {"organization_id": 1}, "sync": {"interval": "2m"}, "server": {}}
        )
        assert config.server is not None
        assert config.server.stale_after == timedelta(minutes=6)
        config = config_from_dict(
            {"source": {"organization_id": 1}, "server": {"stale_after": "1h"}}
        )
        assert config.server is not None
        assert config.server.stale_after == timedelta(hours=1)

    def test_token_cache_is_at_most_a_minute(self, tmp_path: Path) -> None:
        """[server] token_cache bounds how long a revoked feed URL works: 30 s unless set, never over 1 m."""
        config = config_from_dict({"source": {"organization_id": 1}, "server": {}})
        assert config.server is not None
        assert config.server.token_cache == timedelta(seconds=30)
        path = write(tmp_path, '[source]\norganization_id = 1\n\n[server]\ntoken_cache = "2m"\n')
        [(key, message)] = problems_of(path)
        assert key == "server.token_cache"
        assert "at most 1m" in message

    def test_state_url_defaults_under_state_directory(self, tmp_path: Path) -> None:
        """Without [state] url the database lives in $STATE_DIRECTORY, else in the working directory."""
        config = config_from_dict(
            {"source": {"organization_id": 1}}, env={"STATE_DIRECTORY": str(tmp_path)}
        )
        assert config.state.url == f"sqlite:///{tmp_path}/state.db"
        config = config_from_dict({"source": {"organization_id": 1}})
        assert config.state.url == f"sqlite:///{Path.cwd()}/apexcal-state.db"

    def test_zero_reconcile_interval_means_every_cycle(self) -> None:
        """ "0s" is accepted where it means every cycle."""
        config = config_from_dict(
            {"source": {"organization_id": 1}, "sync": {"reconcile_interval": "0s", "jitter": 0}}
        )
        assert config.sync.reconcile_interval == timedelta(0)
        assert config.sync.jitter == timedelta(0)

    def test_feed_calendar_name_defaults_to_its_name(self) -> None:
        """A feed without calendar_name is shown under its name."""
        config = config_from_dict(
            {"source": {"organization_id": 1}, "feeds": [{"name": "team", "path": "/tmp/t.ics"}]}
        )
        assert config.feeds[0].calendar_name == "team"

    def test_listen_splits_into_host_and_port(self) -> None:
        """server.listen gives host and port, IPv6 brackets removed."""
        config = config_from_dict(
            {"source": {"organization_id": 1}, "server": {"listen": "[::1]:0"}}
        )
        assert config.server is not None
        assert (config.server.host, config.server.port) == ("::1", 0)

    def test_relative_paths_are_relative_to_the_config_file(self, tmp_path: Path) -> None:
        """token_file, password_file and feed paths are read relative to the file's directory."""
        file = write(
            tmp_path,
            MINIMAL
            + 'token_file = "secrets/token"\n'
            + TARGET
            + 'username = "j"\npassword_file = "j.pw"\n[[feeds]]\nname = "f"\npath = "out/f.ics"\n',
        )
        config = load_config(file, env={})
        assert config.source.token_file == tmp_path / "secrets/token"
        assert config.targets[0].password_file == tmp_path / "j.pw"
        assert config.feeds[0].path == tmp_path / "out/f.ics"

    def test_toml_dates_in_filters_become_iso_text(self) -> None:
        """A TOML date in a start_date range is kept as the API's YYYY-MM-DD text."""
        import datetime as dt

        config = config_from_dict(
            {
                "source": {"organization_id": 1},
                "targets": [
                    {
                        "name": "t",
                        "url": "http://d/",
                        "filter": {
                            "start_date": {"$gte": dt.date(2025, 4, 1), "$lte": "2025-04-30"}
                        },
                    }
                ],
            }
        )
        assert config.targets[0].filter == {
            "start_date": {"$gte": "2025-04-01", "$lte": "2025-04-30"}
        }

    def test_config_is_frozen(self) -> None:
        """A loaded config cannot be changed by accident inside the program."""
        config = config_from_dict({"source": {"organization_id": 1}})
        with pytest.raises(ValueError, match="frozen"):
            config.source.organization_id = 2  # type: ignore[misc]

    def test_in_memory_problems_name_the_given_file(self) -> None:
        """config_from_dict reports problems under the name it is given."""
        with pytest.raises(ConfigError) as info:
            config_from_dict({"source": {}}, file="<demo>")
        assert str(info.value) == "<demo>: source.organization_id: missing required key"

    def test_lookup_by_name(self) -> None:
        """Targets and feeds are found by name; an unknown name is a KeyError."""
        config = config_from_dict(
            {"source": {"organization_id": 1}, "targets": [{"name": "t", "url": "http://d/"}]}
        )
        assert config.target("t").url == "http://d/"
        with pytest.raises(KeyError):
            config.feed("t")


class TestEnvironmentOverrides:
    def test_section_keys_are_overridden_and_parsed_as_toml(self, tmp_path: Path) -> None:
        """APEXCAL_<SECTION>__<KEY> replaces file values; numbers and booleans are typed, durations are text."""
        file = write(tmp_path, MINIMAL + TARGET)
        config = load_config(
            file,
            env={
                "APEXCAL_SOURCE__BASE_URL": "http://127.0.0.1:8123",
                "APEXCAL_SOURCE__ORGANIZATION_ID": "31",
                "APEXCAL_SYNC__INTERVAL": "1m",
                "APEXCAL_SYNC__CONCURRENCY": "8",
                "APEXCAL_SYNC__RECREATE_DELETED": "false",
                "APEXCAL_LOG__LEVEL": "DEBUG",
            },
        )
        assert config.source.base_url == "http://127.0.0.1:8123"
        assert config.source.organization_id == 31
        assert config.sync.interval == timedelta(minutes=1)
        assert config.sync.concurrency == 8
        assert config.sync.recreate_deleted is False
        assert config.log.level == "debug"

    def test_list_entries_are_addressed_by_index_or_name(self, tmp_path: Path) -> None:
        """APEXCAL_TARGETS__0__… and APEXCAL_TARGETS__JANE__… reach the same target, tables included."""
        file = write(tmp_path, MINIMAL + TARGET)
        config = load_config(
            file,
            env={
                "APEXCAL_TARGETS__0__URL": "https://other.example/jane/",
                "APEXCAL_TARGETS__JANE__PRIVACY": "busy",
                "APEXCAL_TARGETS__JANE__FILTER__ACTIVITY_TYPE": '["call", "task"]',
                "APEXCAL_TARGETS__JANE__USERNAME": '"1234"',
                "APEXCAL_TARGETS__JANE__PASSWORD": "12345678",
            },
        )
        target = config.targets[0]
        assert target.url == "https://other.example/jane/"
        assert target.privacy == "busy"
        assert target.filter == {"activity_type": ["call", "task"]}
        assert target.username == "1234"
        assert target.password is not None
        assert target.password.get_secret_value() == "12345678"

    def test_missing_tables_are_created_by_overrides(self, tmp_path: Path) -> None:
        """An override may add a table the file does not have."""
        config = load_config(
            write(tmp_path, MINIMAL), env={"APEXCAL_SERVER__LISTEN": "127.0.0.1:0"}
        )
        assert config.server is not None
        assert config.server.port == 0

    def test_bad_override_names_its_variable(self, tmp_path: Path) -> None:
        """A bad or unknown override is reported at its key path with the variable named."""
        file = write(tmp_path, MINIMAL + TARGET)
        problems = problems_of(
            file,
            env={
                "APEXCAL_SYNC__INTERVAL": "often",
                "APEXCAL_SYNC__INTERVALL": "5m",
                "APEXCAL_TARGETS__3__URL": "https://x.example/",
                "APEXCAL_TARGETS__URL": "https://x.example/",
            },
        )
        assert problems == [
            (
                "sync.interval",
                'not a duration: expected a duration such as "30s", "5m", "1h30m" or "2d", or whole seconds (from APEXCAL_SYNC__INTERVAL)',
            ),
            (
                "sync.intervall",
                "unknown key (did you mean 'interval'?) (from APEXCAL_SYNC__INTERVALL)",
            ),
            ("APEXCAL_TARGETS__3__URL", "targets has no entry '3'"),
            ("APEXCAL_TARGETS__URL", "targets is a list: name an entry"),
        ]

    def test_variables_without_a_section_are_not_overrides(self, tmp_path: Path) -> None:
        """APEXCAL_TOKEN and APEXCAL_TEST_POSTGRES_URL are not read as config keys."""
        config = load_config(
            write(tmp_path, MINIMAL),
            env={"APEXCAL_TOKEN": "tok-tok-tok", "APEXCAL_TEST_POSTGRES_URL": "postgresql://x/y"},
        )
        assert config.source.token is None


class TestEnvValue:
    @given(
        st.one_of(
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.booleans(),
            st.lists(st.text(alphabet=string.ascii_lowercase + "_", min_size=1), max_size=5),
        )
    )
    def test_toml_values_come_back_typed(self, value: object) -> None:
        """An override written as a TOML value is read back as that value."""
        text = json.dumps(value)  # JSON ints, booleans and string lists are TOML too
        assert env_value("key", text) == value

    @given(st.text(alphabet=string.ascii_letters + string.digits + ":/.-_ ", min_size=1))
    def test_secrets_stay_text(self, text: str) -> None:
        """token and password overrides are never reinterpreted, whatever they look like."""
        assert env_value("password", text) == text
        assert env_value("token", text) == text

    @pytest.mark.parametrize(
        "text", ["5m", "1h30m", "UTC", "https://api.example.com", "2025-04-01", "12:30:00"]
    )
    def test_durations_urls_and_dates_stay_text(self, text: str) -> None:
        """Values that are not TOML, or that TOML would read as dates and times, stay text."""
        assert env_value("key", text) == text


KEYS = sorted(
    {
        key
        for model in (Config, *(m.annotation for m in Config.model_fields.values()))
        for key in getattr(model, "model_fields", {})
    }
    | {"name", "url", "path", "filter", "window", "username", "password", "activity_type", "$gte"}
    | {"done", "interval", "privacy", "zz", "organization_id", "past_days", "listen"}
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True),
    st.sampled_from(
        ["", "5m", "0s", "x y", "http://h/", "UTC", "#ABCDEF", "{subject}", "{", "a:1"]
    ),
    st.text(max_size=8),
    st.dates(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


class TestArbitraryInput:
    @settings(max_examples=60, deadline=None)
    @given(
        st.fixed_dictionaries(
            {"source": st.fixed_dictionaries({"organization_id": st.integers(1, 99)})},
            optional=dict.fromkeys(
                ("sync", "mapping", "targets", "feeds", "server", "log", "state"), VALUES
            ),
        ),
        st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3),
    )
    def test_any_shape_is_a_config_or_a_list_of_problems(
        self, data: dict[str, object], extra: dict[str, object]
    ) -> None:
        """Whatever the file holds, loading gives a Config or a ConfigError of located problems, never a crash."""
        source = data["source"]
        assert isinstance(source, dict)
        source.update(extra)
        problems: tuple[Problem, ...] = ()
        try:
            config_from_dict(data)
        except ConfigError as exc:
            problems = exc.problems
            assert problems, "a ConfigError always names at least one problem"
        for problem in problems:
            assert str(problem).startswith("<config>: ")
            assert "\n" not in problem.message


def test_config_module_exposes_the_models() -> None:
    """The Config model is importable from apexcal.config (the contract others build on)."""
    assert "targets" in Config.model_fields


class TestSummaryPlaceholders:
    @pytest.mark.parametrize("name", sorted(SUMMARY_PLACEHOLDERS))
    def test_every_accepted_placeholder_maps(self, name: str) -> None:
        """Every placeholder the config accepts in mapping.summary fills in when an activity is mapped."""
        config = config_from_dict(
            {"source": {"organization_id": 27}, "mapping": {"summary": f"[{{{name}}}]"}}
        )
        options = MappingOptions(summary_template=config.mapping.summary)
        event = map_activity(
            activity(
                deal={"id": 1, "name": "Big deal"},
                contact={"id": 2, "full_name": "Ann Contact"},
                company={"id": 3, "name": "Acme"},
                assigned_to_user={"id": 46, "full_name": "John Doe"},
            ),
            TYPES,
            options,
        )
        expected = {
            "subject": "Quarterly review",
            "type": "Meeting",
            "deal": "Big deal",
            "contact": "Ann Contact",
            "company": "Acme",
            "assigned_to": "John Doe",
            "assignee": "John Doe",
        }
        assert str(event["SUMMARY"]) == f"[{expected[name]}]"
