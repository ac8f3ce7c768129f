//! AMQP mode, for brokers without the management plugin: a passive
//! `queue.declare` of each configured queue answers its message count
//! (ready messages) and consumer count. One connection is kept from run to
//! run; a queue that does not exist closes the channel (AMQP's rule), so
//! another is opened for the next queue.

use std::time::Duration;

use carat_collector::redact::redact_secret;
use carat_collector::{Batch, CollectorError};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties};

use crate::publish::NameRules;

/// AMQP's limit on a queue's name, in bytes.
const MAX_QUEUE_NAME: usize = 255;

/// A broker read over AMQP.
pub struct AmqpSource {
    uri: AMQPUri,
    display: String,
    password: Option<String>,
    queues: Vec<String>,
    timeout: Duration,
    connection: Option<Connection>,
    channel: Option<Channel>,
}

impl AmqpSource {
    /// Checks `url` (`amqp://host:port/vhost`) and the queues.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        queues: Vec<String>,
        timeout: Duration,
    ) -> Result<AmqpSource, CollectorError> {
        let bad = |why: &str| CollectorError::option("url", why.to_owned());
        // The parser's message may quote the URL: it is not repeated.
        let mut uri: AMQPUri = url
            .parse()
            .map_err(|_: String| bad("not an AMQP URL (amqp://host:5672/vhost)"))?;
        if uri.scheme == AMQPScheme::AMQPS {
            return Err(bad(
                "amqps:// needs TLS, which carat's AMQP client does not include: use amqp:// \
                 (through a local TLS tunnel if the broker is remote), or the management API",
            ));
        }
        if url.contains('@') {
            return Err(bad(
                "credentials in the URL are not accepted: use the username and password options",
            ));
        }
        if let Some(user) = username {
            uri.authority.userinfo.username = user.to_owned();
        }
        if let Some(password) = password {
            uri.authority.userinfo.password = password.to_owned();
        }
        if queues.is_empty() {
            return Err(CollectorError::option(
                "queues",
                "AMQP mode reads the queues it is given: list them (queues = [\"jobs\"])",
            ));
        }
        if let Some(long) = queues.iter().find(|q| q.len() > MAX_QUEUE_NAME) {
            return Err(CollectorError::option(
                "queues",
                format!("{long:?} is longer than AMQP's {MAX_QUEUE_NAME} bytes"),
            ));
        }
        let display = format!(
            "amqp://{}:{}/{}",
            uri.authority.host,
            uri.authority.port,
            crate::api::path_segment(&uri.vhost)
        );
        Ok(AmqpSource {
            uri,
            display,
            password: password.map(str::to_owned),
            queues,
            timeout,
            connection: None,
            channel: None,
        })
    }

    /// Adds `queues.<queue>.messages` and `.consumers` of each queue under
    /// `prefix`. Queues that do not exist are left out, and the run fails
    /// naming them once the others are read.
    pub async fn collect(
        &mut self,
        names: &NameRules,
        batch: &mut Batch,
    ) -> Result<(), CollectorError> {
        let mut missing = Vec::new();
        let mut name = String::new();
        for i in 0..self.queues.len() {
            let channel = self.channel().await?;
            let queue = self.queues[i].clone();
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let declare =
                channel.queue_declare(queue.as_str().into(), passive, FieldTable::default());
            match tokio::time::timeout(self.timeout, declare).await {
                Ok(Ok(answer)) => {
                    name.clear();
                    name.push_str("queues.");
                    names.push(&mut name, &queue);
                    let len = name.len();
                    name.push_str(".messages");
                    batch.gauge(&name, f64::from(answer.message_count()));
                    name.truncate(len);
                    name.push_str(".consumers");
                    batch.gauge(&name, f64::from(answer.consumer_count()));
                }
                // NOT_FOUND closes the channel, not the connection.
                Ok(Err(e)) if self.connection_is_open() && is_not_found(&e) => {
                    self.channel = None;
                    missing.push(queue);
                }
                Ok(Err(e)) => {
                    self.drop_connection();
                    return Err(CollectorError::connect(
                        &self.display,
                        format!("declaring {queue:?}: {}", self.clean(&e.to_string())),
                    ));
                }
                Err(_) => {
                    self.drop_connection();
                    return Err(CollectorError::timeout(
                        &self.display,
                        format!("declaring {queue:?}: no answer within {:?}", self.timeout),
                    ));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(CollectorError::status(
            &self.display,
            Some(404),
            format!("no such queue: {}", missing.join(", ")),
        ))
    }

    /// The channel, opening the connection and the channel as needed.
    async fn channel(&mut self) -> Result<Channel, CollectorError> {
        if let Some(channel) = &self.channel {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        if !self.connection_is_open() {
            self.drop_connection();
            let properties = ConnectionProperties::default()
                .with_connection_name("carat rabbitmq collector".into());
            let connect = Connection::connect_uri(self.uri.clone(), properties);
            let connection = match tokio::time::timeout(self.timeout, connect).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    let message = self.clean(&e.to_string());
                    let hint = if message.contains("ACCESS_REFUSED") || message.contains("403") {
                        "; check username and password"
                    } else {
                        ""
                    };
                    return Err(CollectorError::connect(
                        &self.display,
                        format!("{message}{hint}"),
                    ));
                }
                Err(_) => {
                    return Err(CollectorError::timeout(
                        &self.display,
                        format!("connecting: no answer within {:?}", self.timeout),
                    ))
                }
            };
            self.connection = Some(connection);
        }
        let Some(connection) = &self.connection else {
            return Err(CollectorError::connect(&self.display, "no connection"));
        };
        let open = connection.create_channel();
        let channel = match tokio::time::timeout(self.timeout, open).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                let message = self.clean(&e.to_string());
                self.drop_connection();
                return Err(CollectorError::connect(&self.display, message));
            }
            Err(_) => {
                self.drop_connection();
                return Err(CollectorError::timeout(
                    &self.display,
                    format!("opening a channel: no answer within {:?}", self.timeout),
                ));
            }
        };
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    fn connection_is_open(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.status().connected())
    }

    fn drop_connection(&mut self) {
        self.channel = None;
        self.connection = None;
    }

    /// `message` without the password.
    fn clean(&self, message: &str) -> String {
        match &self.password {
            Some(p) => redact_secret(message, p).into_owned(),
            None => message.to_owned(),
        }
    }
}

/// Whether `e` is the broker's 404 NOT_FOUND (a passive declare of a queue
/// that does not exist).
fn is_not_found(e: &lapin::Error) -> bool {
    let text = e.to_string();
    text.contains("NOT_FOUND") || text.contains("404")
}
