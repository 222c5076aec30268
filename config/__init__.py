"""Configuration: pydantic schema, YAML loader with file:line:column errors, default config."""

from config.defaults import ensure_default_config, render_default_config
from config.loader import (
    CONFIG_FILENAME,
    ConfigCheck,
    check_config,
    config_file_path,
    load_config,
    parse_config,
)
from config.problems import ConfigError, ConfigProblem, validation_problems
from config.schema import (
    AuthConfig,
    CrmConfig,
    ExtensionConfig,
    HttpConfig,
    ListenConfig,
    RegistrationConfig,
    RtpConfig,
    SipConfig,
    StoreConfig,
    SwitchboardConfig,
)

__all__ = [
    "CONFIG_FILENAME",
    "AuthConfig",
    "ConfigCheck",
    "ConfigError",
    "ConfigProblem",
    "CrmConfig",
    "ExtensionConfig",
    "HttpConfig",
    "ListenConfig",
    "RegistrationConfig",
    "RtpConfig",
    "SipConfig",
    "StoreConfig",
    "SwitchboardConfig",
    "check_config",
    "config_file_path",
    "ensure_default_config",
    "load_config",
    "parse_config",
    "render_default_config",
    "validation_problems",
]
