//! One MongoDB server (or one `uri`) the collector reads: its driver client,
//! built at the first run and kept, and its commands, each bounded by
//! `request_timeout`, with the driver's errors turned into the collector's
//! error kinds.

use std::time::Duration;

use carat_collector::redact::{redact_secret, redact_url, redact_urls};
use carat_collector::CollectorError;
use mongodb::bson::Document;
use mongodb::error::{Error as DriverError, ErrorKind};
use mongodb::options::{
    ClientOptions, ConnectionString, Credential, HostInfo, ServerAddress, ServerMonitoringMode,
    Tls, TlsOptions,
};
use mongodb::Client;

use crate::derived::Intervals;
use crate::MongodbConfig;

/// The bound on one command, server selection included: the request
/// timeout and a little more, so that when the server cannot be found the
/// driver's own error (which says why: refused, no answer, too old) ends the
/// command rather than this bound.
fn command_limit(config: &MongodbConfig) -> Duration {
    config.request_timeout + SELECTION_MARGIN
}

/// See [`command_limit`].
const SELECTION_MARGIN: Duration = Duration::from_millis(500);

/// Where a server is: a connection string, or one `host:port`.
#[derive(Clone, Debug)]
enum Address {
    Uri(String),
    Host(ServerAddress),
}

/// One server the collector reads, with what it keeps between runs.
pub struct Server {
    /// Where its metrics go below the collector's path: empty, an alias,
    /// or its sanitised `host:port`.
    pub prefix: String,
    /// How errors name it: the URI with its password hidden, or `host:port`.
    pub display: String,
    address: Address,
    client: Option<Client>,
    /// The previous reading behind its interval percentages.
    pub intervals: Intervals,
}

impl Server {
    /// A server given by a connection string, checked now (its syntax and
    /// options; a `mongodb+srv://` name is looked up at the first run).
    pub fn from_uri(uri: &str, config: &MongodbConfig) -> Result<Server, CollectorError> {
        let parsed = ConnectionString::parse(uri).map_err(|e| {
            CollectorError::option("uri", redact_urls(&redact_secret(&e.to_string(), uri)))
        })?;
        if config.username.is_some() && parsed.credential.is_some() {
            return Err(CollectorError::option(
                "username",
                "the uri has credentials of its own: set them in one place only",
            ));
        }
        if let (Some(true), HostInfo::HostIdentifiers(hosts)) =
            (config.direct_connection, &parsed.host_info)
        {
            if hosts.len() > 1 {
                return Err(CollectorError::option(
                    "direct_connection",
                    "direct_connection = true reads one server, and the uri lists several: \
                     give one host per instance, or set direct_connection = false",
                ));
            }
        }
        Ok(Server::new(
            String::new(),
            redact_url(uri).into_owned(),
            Address::Uri(uri.to_owned()),
        ))
    }

    /// A server of the `hosts` list: `host[:port]` or `alias@host[:port]`.
    /// `alone` tells whether it is the only one (then it has no prefix of
    /// its own unless it has an alias, as in Diamond).
    pub fn from_host(entry: &str, alone: bool) -> Result<Server, CollectorError> {
        let (alias, host) = match entry.rsplit_once('@') {
            Some((alias, host)) => (Some(alias), host),
            None => (None, entry),
        };
        let address = ServerAddress::parse(host).map_err(|e| {
            CollectorError::option(
                "hosts",
                format!("{entry:?} is not host[:port] or alias@host[:port]: {e}"),
            )
        })?;
        if alias == Some("") {
            return Err(CollectorError::option(
                "hosts",
                format!("{entry:?} has an empty alias before the @"),
            ));
        }
        let prefix = match alias {
            Some(alias) => carat_collector::name::component(alias),
            None if alone => String::new(),
            // Diamond's: the host with `.` and `:` as `_`.
            None => carat_collector::name::component(host),
        };
        Ok(Server::new(
            prefix,
            address.to_string(),
            Address::Host(address),
        ))
    }

    fn new(prefix: String, display: String, address: Address) -> Server {
        Server {
            prefix,
            display,
            address,
            client: None,
            intervals: Intervals::default(),
        }
    }

    /// The client, built at the first call and kept: one per server, so
    /// its connection and its monitoring are reused from run to run.
    /// (A `Client` is a handle: cloning it shares the same connections.)
    async fn client(&mut self, config: &MongodbConfig) -> Result<Client, CollectorError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let options = self.client_options(config).await?;
        let client =
            Client::with_options(options).map_err(|e| self.error("connecting", &e, config))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn client_options(
        &self,
        config: &MongodbConfig,
    ) -> Result<ClientOptions, CollectorError> {
        let mut options = match &self.address {
            Address::Uri(uri) => {
                let parse = ClientOptions::parse(uri.as_str());
                match tokio::time::timeout(config.request_timeout, parse).await {
                    Ok(Ok(options)) => options,
                    Ok(Err(e)) => return Err(self.error("reading the uri", &e, config)),
                    Err(_) => {
                        return Err(CollectorError::timeout(
                            &self.display,
                            format!(
                            "looking up the uri's hosts took longer than request_timeout ({:?})",
                            config.request_timeout
                        ),
                        ))
                    }
                }
            }
            Address::Host(address) => {
                let mut options = ClientOptions::default();
                options.hosts = vec![address.clone()];
                options
            }
        };
        options.app_name = Some("carat".into());
        options.connect_timeout = Some(config.request_timeout);
        options.server_selection_timeout = Some(config.request_timeout);
        // One command at a time: one connection, plus the monitor's.
        options.max_pool_size = Some(1);
        options.min_pool_size = Some(0);
        // Polling, not the streaming protocol's second connection.
        options.server_monitoring_mode = Some(ServerMonitoringMode::Poll);
        // The agent retries a failed run, with backoff; a retry here would
        // only double the time a run takes against a server that is away.
        options.retry_reads = Some(false);
        if options.direct_connection.is_none() {
            options.direct_connection =
                Some(config.direct_connection.unwrap_or(options.hosts.len() <= 1));
        }
        if let Some(username) = &config.username {
            options.credential = Some(
                Credential::builder()
                    .username(username.clone())
                    .password(config.password.clone())
                    .source(config.auth_source.clone())
                    .build(),
            );
        } else if let (Some(source), Some(credential)) =
            (&config.auth_source, options.credential.as_mut())
        {
            credential.source = Some(source.clone());
        }
        // `tls = true` turns TLS on; a uri may have turned it on already
        // (`tls=true`, `mongodb+srv://`): the CA file and `tls_insecure`
        // apply to either.
        let uri_tls = matches!(options.tls, Some(Tls::Enabled(_)));
        if config.tls || uri_tls {
            let mut tls = match options.tls.take() {
                Some(Tls::Enabled(tls)) => tls,
                _ => TlsOptions::default(),
            };
            if let Some(ca) = &config.tls_ca_file {
                tls.ca_file_path = Some(ca.clone());
            }
            if config.tls_insecure {
                // With rustls this accepts any host name too.
                tls.allow_invalid_certificates = Some(true);
            }
            options.tls = Some(Tls::Enabled(tls));
        }
        Ok(options)
    }

    /// Runs `command` on database `db`, within the timeout.
    pub async fn command(
        &mut self,
        db: &str,
        command: Document,
        what: &str,
        config: &MongodbConfig,
    ) -> Result<Document, CollectorError> {
        let client = self.client(config).await?;
        let database = client.database(db);
        let run = database.run_command(command);
        self.bounded(what, run, config).await
    }

    /// The names of the databases (`listDatabases`), within the timeout.
    pub async fn database_names(
        &mut self,
        config: &MongodbConfig,
    ) -> Result<Vec<String>, CollectorError> {
        let client = self.client(config).await?;
        let run = client.list_database_names();
        self.bounded("listDatabases", run, config).await
    }

    /// The names of the collections of `db` (`listCollections`).
    pub async fn collection_names(
        &mut self,
        db: &str,
        config: &MongodbConfig,
    ) -> Result<Vec<String>, CollectorError> {
        let client = self.client(config).await?;
        let database = client.database(db);
        let run = database.list_collection_names();
        self.bounded(&format!("listCollections on {db}"), run, config)
            .await
    }

    /// Awaits the driver's `run` for at most [`command_limit`], turning its
    /// error, or the end of the time allowed, into a collector error.
    async fn bounded<T>(
        &self,
        what: &str,
        run: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
        config: &MongodbConfig,
    ) -> Result<T, CollectorError> {
        match tokio::time::timeout(command_limit(config), run).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(self.error(what, &e, config)),
            Err(_) => Err(self.timed_out(what, config)),
        }
    }

    fn timed_out(&self, what: &str, config: &MongodbConfig) -> CollectorError {
        CollectorError::timeout(
            &self.display,
            format!(
                "{what} did not finish within request_timeout ({:?})",
                config.request_timeout
            ),
        )
    }

    /// The driver's error `e` while doing `what`, as a collector error of
    /// the right kind, with no secret in its message.
    fn error(&self, what: &str, e: &DriverError, config: &MongodbConfig) -> CollectorError {
        let target = self.display.clone();
        // The kind's own message: the error's Display adds labels and
        // empty fields (`labels: {}, source: None`) an operator has no use for.
        let text = e.kind.to_string();
        let text = redact_urls(&text);
        let text = match &config.password {
            Some(password) => redact_secret(&text, password).into_owned(),
            None => text.into_owned(),
        };
        let message = format!("{what}: {}", text.trim_end_matches('.'));
        match e.kind.as_ref() {
            ErrorKind::Authentication { .. } => CollectorError::status(
                target,
                None,
                format!("{message}; check username, password and auth_source"),
            ),
            ErrorKind::Command(c) => {
                let hint = match c.code {
                    13 => "; the user needs the clusterMonitor role (or read on the database)",
                    18 => "; check username, password and auth_source",
                    _ => "",
                };
                CollectorError::status(
                    target,
                    u16::try_from(c.code).ok(),
                    format!("{message}{hint}"),
                )
            }
            // Server selection reports the server's wire version as the
            // reason when the server is older than the driver reads.
            ErrorKind::IncompatibleServer { .. } | ErrorKind::ServerSelection { .. }
                if text.contains("wire version") =>
            {
                CollectorError::status(
                    target,
                    None,
                    format!("{message}; carat reads MongoDB 4.4 and later"),
                )
            }
            ErrorKind::InvalidResponse { .. } | ErrorKind::BsonDeserialization(_) => {
                CollectorError::parse(target, message)
            }
            ErrorKind::InvalidTlsConfig { .. } => CollectorError::tls(target, message),
            ErrorKind::InvalidArgument { .. } => {
                CollectorError::config(format!("{target}: {message}"))
            }
            _ if looks_like_tls(&text) => CollectorError::tls(target, message),
            ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                CollectorError::timeout(target, message)
            }
            // No server found in time: the driver's message is its whole
            // topology; the reason is the server's last error in it. A
            // timeout when the server never answered (no error recorded, or
            // its own timeout), a connect error when it refused or failed.
            ErrorKind::ServerSelection { .. } => match selection_reason(&text) {
                Some(reason) if !reason.contains("timed out") => CollectorError::connect(
                    target,
                    format!("{what}: no server available: {reason}"),
                ),
                _ => CollectorError::timeout(
                    target,
                    format!(
                        "{what}: the server did not answer within request_timeout ({:?})",
                        config.request_timeout
                    ),
                ),
            },
            _ => CollectorError::connect(target, message),
        }
    }
}

/// The last error the driver recorded for a server, from its server
/// selection message (`… Error: Kind: I/O error: Connection refused (os
/// error 111), labels: {…} …`): `I/O error: Connection refused (os error
/// 111)`. None when the server never answered.
fn selection_reason(text: &str) -> Option<&str> {
    const START: &str = "Error: Kind: ";
    let from = text.find(START)? + START.len();
    let rest = &text[from..];
    let end = rest
        .find(", labels:")
        .or_else(|| rest.find(" }"))
        .unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Whether a driver's message is about TLS: a certificate not trusted,
/// a handshake that failed.
fn looks_like_tls(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "certificate",
        "tls handshake",
        "invalidcertificate",
        "unknownissuer",
        "received corrupt message",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::selection_reason;

    #[test]
    fn the_reason_of_a_failed_server_selection() {
        let refused = "Server selection timeout: No available servers. Topology: { Type: Single, \
            Servers: [ { Address: 127.0.0.1:1, Type: Unknown, Error: Kind: I/O error: Connection \
            refused (os error 111), labels: {\"RetryableError\"}, source: None } ] }";
        assert_eq!(
            selection_reason(refused),
            Some("I/O error: Connection refused (os error 111)")
        );
        let silent = "Server selection timeout: No available servers. Topology: { Type: Single, \
            Servers: [ { Address: 127.0.0.1:1, Type: Unknown } ] }";
        assert_eq!(selection_reason(silent), None);
    }
}
