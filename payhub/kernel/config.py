"""Settings: environment variables (PAYHUB_*) over an optional TOML file over defaults.

Every setting is declared once in SETTINGS with its documentation; the README's configuration table
is printed from it by `payhub config-doc`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SERVICE_NAMES = ("merchant", "trade", "cashier", "risk", "settlement", "analytics", "channel")


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    data_dir: str = _setting("var", "Directory for the default SQLite database and development keys.")
    database_url: str = _setting("", "SQLAlchemy URL. Default: SQLite file `<data_dir>/payhub.db` (WAL). "
                                     "Production: `postgresql+psycopg://user@host:5432/payhub`.")
    db_pool_size: int = _setting(24, "Connections kept per process in the PostgreSQL pool (half as many more "
                                     "may open briefly). Keep it at least `threads` + 8 (the background jobs), "
                                     "or connections are opened and closed under load. Capped at start-up to fit "
                                     "`db_connection_share` of PostgreSQL's `max_connections`.")
    db_connection_share: float = _setting(0.8, "Share of PostgreSQL's `max_connections` (less "
                                               "`superuser_reserved_connections`) that all worker processes of "
                                               "this server may hold together: at start-up each worker's pool "
                                               "plus overflow is capped to share * available / workers (logged). "
                                               "Several servers on one database: give each its part, e.g. 0.2 "
                                               "for each of four.")
    listen: str = _setting("127.0.0.1:50051", "gRPC listen address HOST:PORT. A port already taken is an error.")
    services: str = _setting("all", "Comma-separated services to serve in this process "
                                    f"({', '.join(SERVICE_NAMES)}) or `all`.")
    workers: int = _setting(1, "Server processes sharing the listen port (SO_REUSEPORT).")
    threads: int = _setting(16, "gRPC handler threads per process. On a 2-core machine 16 served more than "
                                "32 (less switching). A WatchEvents stream holds one for its whole life, so a "
                                "process serves at most threads/2 streams (RESOURCE_EXHAUSTED beyond).")
    metrics_listen: str = _setting("127.0.0.1:9464", "HTTP address of the Prometheus /metrics endpoint; "
                                                     "empty disables it. Worker N listens on port + N.")
    http_listen: str = _setting("127.0.0.1:8080", "HTTP listen address HOST:PORT of the HTTP endpoint (channel "
                                                  "callbacks `POST /channels/{channel}/notify/{merchant}`, "
                                                  "`GET /healthz`; uvicorn). Every worker serves it (SO_REUSEPORT); "
                                                  "a port already taken is an error; empty turns it off.")
    public_base_url: str = _setting("", "Base URL under which channels reach payhub's callback endpoint "
                                        "(notify URLs). Default: http://<http_listen>.")
    cashier_base_url: str = _setting("", "Base URL of the hosted cashier pages handed to consumers "
                                         "(`<base>/cashier/<session>`). Default: the public base URL.")
    channel_connect_seconds: float = _setting(3.0, "HTTP channel adapters (wechatpay, ...): seconds to connect "
                                                   "to a channel; a connection never made is safe to fail over.")
    channel_timeout_seconds: float = _setting(10.0, "HTTP channel adapters: seconds one call to a channel may take "
                                                    "in all (never longer than what is left of the deadline of "
                                                    "the call that caused it); past it the outcome is UNKNOWN "
                                                    "and re-queried.")
    admin_token: str = _setting("", "Bootstrap admin bearer token (role admin). Empty: no bootstrap token.")
    internal_token: str = _setting("", "Bearer token services use to call each other when run apart.")
    encryption_keys: str = _setting("", "Key ring for secrets at rest: `kid:base64(32 bytes)` entries "
                                        "separated by commas, newest first. Empty: a development key ring "
                                        "is created in `<data_dir>/keys`.")
    drain_seconds: float = _setting(1.0, "On SIGTERM: seconds health reports NOT_SERVING before the "
                                         "server stops taking calls.")
    grace_seconds: float = _setting(10.0, "On SIGTERM: seconds in-flight calls get to finish.")
    log_level: str = _setting("info", "debug, info, warning or error.")
    log_format: str = _setting("json", "`json` (one object per line) or `console`.")
    background_workers: bool = _setting(True, "Run the background jobs (expiry, re-query, webhooks, "
                                              "outbox consumers) in this process.")
    requery_grace_seconds: float = _setting(60.0, "Seconds after a confirmation claims a payment (or a refund "
                                                  "is created) before the re-query job may ask the channel "
                                                  "about it: the request that sent it answers first; after a "
                                                  "crash, the job finds it then.")
    requery_schedule: str = _setting("", "When unknown payments and pending refunds are queried again: "
                                         "comma-separated steps `<n><unit>[*count]` (unit s, m, h or d); "
                                         "when they are used up, `payment.stuck` / `refund.stuck` goes out "
                                         "and queries go on daily. Empty: `5s,15s,1m*10,10m*5,1h*23`. Short "
                                         "ones are for tests, e.g. `1s*3`.")
    risk_config_poll_seconds: float = _setting(1.0, "How often each replica checks whether risk rules or the "
                                                    "block list changed (a change reaches every replica within "
                                                    "this, without a restart).")
    risk_ip_countries: str = _setting("", "CSV file of IP ranges and their countries for risk (`<CIDR or "
                                          "first-last>,<CC>` a line). Empty: the sandbox table (the RFC 5737 "
                                          "documentation ranges: 192.0.2.0/24 US, 198.51.100.0/24 CN, "
                                          "203.0.113.0/24 GB).")
    risk_bin_countries: str = _setting("", "CSV file of card BIN prefixes and their issuing countries for risk "
                                           "(`<1-8 digits>,<CC>` a line, longest prefix wins). Empty: the "
                                           "sandbox table (424242 and 400000 US, 62 CN).")
    cashier_client_ip_header: str = _setting("", "The header a trusted reverse proxy in front of payhub sets to "
                                                 "the consumer's IP address for the hosted cashier (e.g. "
                                                 "`X-Forwarded-For`: its last entry is used). Empty: the TCP "
                                                 "peer's address; never set it without such a proxy.")
    risk_review_timeout_seconds: float = _setting(86400.0, "How long a payment held by a REVIEW decision waits "
                                                           "for ReviewTransaction before the default applies.")
    risk_review_default: str = _setting("reject", "What an unreviewed hold becomes after the timeout: `reject` "
                                                  "(the payment is voided) or `approve` (it is captured).")
    breaker_failure_threshold: int = _setting(5, "Technical failures in a row (timeouts, unreachable, UNKNOWN "
                                                 "answers) that open a channel's circuit breaker in this "
                                                 "process; routing then skips the channel.")
    breaker_cooldown_seconds: float = _setting(30.0, "Seconds an open circuit breaker keeps its channel out of "
                                                     "routing before one probe call may try it (half-open).")
    routing_exploration: float = _setting(0.05, "Share of payments the success-rate strategy sends first to "
                                                "a channel other than the best one, so every rate stays measured.")
    channel_costs: str = _setting("", "What each channel charges, for the lowest-cost strategy and the ledger's "
                                      "channel cost accounts (margin per channel): "
                                      "`channel[/METHOD]=PERCENT%[+FIXED]` entries separated by commas, fixed in "
                                      "minor units, e.g. `alipay=0.6%,bankcard/CARD=0.5%+10`.")
    ledger_refund_fee_policy: str = _setting("proportional", "What a refund does with the merchant's fee: "
                                                             "`none` (kept), `proportional` (the refunded share "
                                                             "comes back, rounded half up on the cumulative "
                                                             "refunded amount) or `full` (all of it comes back "
                                                             "with the first refund).")
    settlement_time: str = _setting("02:00", "Beijing time (HH:MM) at which the daily settlement run starts; "
                                             "empty disables the scheduled run (RunSettlement still works).")
    settlement_weekend: str = _setting("sat,sun", "Days that are not business days for T+N settlement.")
    settlement_holidays: str = _setting("", "Further non-business days, `YYYY-MM-DD` separated by commas.")
    settlement_working_days: str = _setting("", "Weekend days that are business days (调休), `YYYY-MM-DD` "
                                                "separated by commas.")
    payout_channel: str = _setting("sandbox", "The payout-capable channel payouts are sent through.")
    merchant_address: str = _setting("", "Address of MerchantService when it is not served here.")
    trade_address: str = _setting("", "Address of TradeService when it is not served here.")
    cashier_address: str = _setting("", "Address of CashierService when it is not served here.")
    risk_address: str = _setting("", "Address of RiskService when it is not served here.")
    settlement_address: str = _setting("", "Address of SettlementService when it is not served here.")
    analytics_address: str = _setting("", "Address of AnalyticsService when it is not served here.")
    channel_address: str = _setting("", "Address of ChannelRouterService when it is not served here.")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir).resolve() / 'payhub.db'}"

    @property
    def effective_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.http_listen}").rstrip("/")

    @property
    def effective_cashier_base_url(self) -> str:
        return (self.cashier_base_url or self.effective_public_base_url).rstrip("/")

    def served_services(self) -> tuple[str, ...]:
        if self.services.strip() in ("", "all"):
            return SERVICE_NAMES
        names = tuple(s.strip() for s in self.services.split(",") if s.strip())
        unknown = [n for n in names if n not in SERVICE_NAMES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; choose from {', '.join(SERVICE_NAMES)}")
        return names

    def address_of(self, service: str) -> str:
        return str(getattr(self, f"{service}_address"))

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def _coerce(raw: Any, template: Any) -> Any:
    if isinstance(template, bool):
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(template, int):
        return int(raw)
    if isinstance(template, float):
        return float(raw)
    return str(raw)


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then the TOML file named by PAYHUB_CONFIG, then PAYHUB_* variables, then overrides."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_path = env.get("PAYHUB_CONFIG")
    if config_path:
        with open(config_path, "rb") as fh:
            values.update(tomllib.load(fh))
    for f in fields(Settings):
        key = f"PAYHUB_{f.name.upper()}"
        if key in env:
            values[f.name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - {f.name for f in fields(Settings)}
    if unknown:
        raise ValueError(f"unknown setting(s): {sorted(unknown)}")
    defaults = Settings()
    return Settings(**{k: _coerce(v, getattr(defaults, k)) for k, v in values.items()})


def settings_table() -> str:
    """The Markdown table of every setting, for the README."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        rows.append(f"| `PAYHUB_{f.name.upper()}` | `{f.default}` | {f.metadata['doc']} |")
    return "\n".join(rows)
