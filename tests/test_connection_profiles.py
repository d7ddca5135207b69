"""Connection profiles: the `temporal` CLI's TOML file, environment and flags, in that precedence
(embedded.connect through temporalio.envconfig), and bad profiles refused in one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from embedded.connect import (
    ConnectionSettingsError,
    add_connection_arguments,
    settings_from_args,
)

PROFILES = """
[profile.default]
address = "temporal.internal:7233"
namespace = "rollouts"

[profile.cloud]
address = "rollouts.a1b2c.tmprl.cloud:7233"
namespace = "rollouts.a1b2c"
api_key = "cloud-api-key-value"

[profile.mtls]
address = "temporal.corp.example:7233"
namespace = "platform"
[profile.mtls.tls]
client_cert_path = "{dir}/client.pem"
client_key_path = "{dir}/client.key"
server_ca_cert_path = "{dir}/ca.pem"
server_name = "temporal-frontend"

[profile.broken]
address = "temporal.corp.example"
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    for name in ("client.pem", "client.key", "ca.pem"):
        (tmp_path / name).write_bytes(f"contents of {name}".encode())
    path = tmp_path / "temporal.toml"
    path.write_text(PROFILES.format(dir=tmp_path))
    return path


def test_an_api_key_profile_gives_tls_and_the_key(config_file: Path) -> None:
    environ = {"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "cloud"}

    settings = settings_from_args(parse([]), environ)

    assert settings.address == "rollouts.a1b2c.tmprl.cloud:7233"
    assert settings.namespace == "rollouts.a1b2c"
    assert settings.api_key == "cloud-api-key-value"
    assert settings.tls_config() is True
    assert "cloud-api-key-value" not in repr(settings)


def test_an_mtls_profile_reads_its_files_into_the_client_tls_config(config_file: Path) -> None:
    settings = settings_from_args(
        parse(["--config-file", str(config_file), "--profile", "mtls"]), {}
    )

    assert (settings.address, settings.namespace) == ("temporal.corp.example:7233", "platform")
    assert settings.api_key is None
    assert settings.tls_config() == TLSConfig(
        domain="temporal-frontend",
        server_root_ca_cert=b"contents of ca.pem",
        client_cert=b"contents of client.pem",
        client_private_key=b"contents of client.key",
    )


def test_environment_overrides_the_profile_and_flags_override_both(config_file: Path) -> None:
    environ = {
        "TEMPORAL_CONFIG_FILE": str(config_file),
        "TEMPORAL_NAMESPACE": "from-env",
        "TEMPORAL_ADDRESS": "env.example:7233",
    }

    from_file = settings_from_args(parse([]), {"TEMPORAL_CONFIG_FILE": str(config_file)})
    from_env = settings_from_args(parse([]), environ)
    from_flag = settings_from_args(parse(["--namespace", "from-flag"]), environ)

    assert (from_file.address, from_file.namespace) == ("temporal.internal:7233", "rollouts")
    assert (from_env.address, from_env.namespace) == ("env.example:7233", "from-env")
    assert (from_flag.address, from_flag.namespace) == ("env.example:7233", "from-flag")
    assert from_file.tls_config() is False


def test_a_tls_flag_replaces_one_file_of_the_profile(config_file: Path, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(b"other ca")

    settings = settings_from_args(
        parse(["--config-file", str(config_file), "--profile", "mtls", "--tls-ca", str(other_ca)]),
        {},
    )

    tls = settings.tls_config()
    assert isinstance(tls, TLSConfig)
    assert tls.server_root_ca_cert == b"other ca"
    assert tls.client_cert == b"contents of client.pem"


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--profile", "staging"], {}, r"^profile 'staging' in .*temporal\.toml: .*staging"),
        ([], {"TEMPORAL_PROFILE": "broken"},
         r"^address of profile 'broken' in .*='temporal\.corp\.example' is not host:port"),
        (["--config-file", "/nonexistent/temporal.toml"], {},
         r"^--config-file='/nonexistent/temporal\.toml': no such file$"),
    ],
)
def test_a_bad_profile_is_refused_in_one_line_naming_it(
    config_file: Path, argv: list[str], environ: dict[str, str], message: str
) -> None:
    if "--config-file" not in argv:
        environ = {**environ, "TEMPORAL_CONFIG_FILE": str(config_file)}

    with pytest.raises(ConnectionSettingsError, match=message) as refused:
        settings_from_args(parse(argv), environ)

    assert "\n" not in str(refused.value)


def test_a_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text("[profile.default\naddress = 1\n")

    with pytest.raises(ConnectionSettingsError, match="TOML parse error") as refused:
        settings_from_args(parse(["--config-file", str(config)]), {})

    assert "\n" not in str(refused.value)


def test_a_profile_file_missing_the_client_key_names_both_settings(tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.default.tls]\nclient_cert_path = "/c.pem"\n')

    with pytest.raises(ConnectionSettingsError, match="client_key_path"):
        settings_from_args(parse(["--config-file", str(config)]), {})
