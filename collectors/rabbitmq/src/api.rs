//! Reading RabbitMQ's management HTTP API with the project's shared HTTP
//! client: the overview, the nodes, and the queues and exchanges a page at
//! a time, asking only for the columns published.
//!
//! A page is read whole (within `max_body_bytes`) and parsed into its items,
//! published, and dropped before the next page is asked for: the memory of a
//! run is bounded by a page, whatever the number of queues, and the cost is
//! linear in it. Brokers older than 3.6 have no pagination and answer the
//! whole list as a JSON array; that is accepted too (one "page").

use carat_collector::http::{HttpClient, Url};
use carat_collector::CollectorError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The columns asked for of each queue: what is published.
pub const QUEUE_COLUMNS: &str = "name,vhost,messages,messages_details,messages_ready,\
messages_ready_details,messages_unacknowledged,messages_unacknowledged_details,consumers,\
consumer_utilisation,memory,message_stats";

/// The columns asked for of each exchange.
pub const EXCHANGE_COLUMNS: &str = "name,vhost,message_stats";

/// One page of a paged listing (`?page=N&page_size=S`).
#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Map<String, Value>>,
    page: u64,
    page_count: u64,
}

/// The management API of one broker.
#[derive(Debug)]
pub struct Api {
    base: Url,
    client: HttpClient,
    page_size: u32,
    body: Vec<u8>,
}

impl Api {
    /// The API at `base` (`http://host:15672`, with or without `/api`).
    pub fn new(mut base: Url, client: HttpClient, page_size: u32) -> Api {
        let path = base
            .path()
            .trim_end_matches('/')
            .trim_end_matches("/api")
            .to_owned();
        base.set_path(&format!("{path}/api/"));
        base.set_query(None);
        base.set_fragment(None);
        Api {
            base,
            client,
            page_size,
            body: Vec::new(),
        }
    }

    /// The API's base, for messages (`http://host:15672/api/`).
    pub fn display(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path: &str, query: Option<&str>) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path()));
        url.set_query(query);
        url
    }

    /// `GET /api/<path>` as a JSON object.
    pub async fn object(&mut self, path: &str) -> Result<Map<String, Value>, CollectorError> {
        let url = self.url(path, None);
        self.client.get_into(&url, &mut self.body).await?;
        parse(&self.body, url.as_str())
    }

    /// `GET /api/<path>` as a JSON array of objects.
    pub async fn list(&mut self, path: &str) -> Result<Vec<Map<String, Value>>, CollectorError> {
        let url = self.url(path, None);
        self.client.get_into(&url, &mut self.body).await?;
        parse(&self.body, url.as_str())
    }

    /// Every item of the paged listing `/api/<path>` with `columns`, a page
    /// at a time: `each` is called on the items of a page before the next
    /// is asked for.
    pub async fn each_page(
        &mut self,
        path: &str,
        columns: &str,
        mut each: impl FnMut(&[Map<String, Value>]),
    ) -> Result<(), CollectorError> {
        let mut page = 1u64;
        loop {
            let query = format!("page={page}&page_size={}&columns={columns}", self.page_size);
            let url = self.url(path, Some(&query));
            self.client.get_into(&url, &mut self.body).await?;
            let listing = read_listing(&self.body, url.as_str())?;
            each(&listing.items);
            match listing.next_page {
                Some(next) if next > page => page = next,
                _ => return Ok(()),
            }
        }
    }
}

/// One answer of a paged listing.
#[derive(Debug)]
pub struct Listing {
    /// Its items.
    pub items: Vec<Map<String, Value>>,
    /// The page to ask for next, if there is one.
    pub next_page: Option<u64>,
}

/// A listing's answer: a page (`{"items": […], "page": 1, "page_count":
/// 4, …}`, 3.6 and later), or the whole list as an array (earlier
/// brokers, which ignore the paging parameters). `origin` names it in
/// errors.
pub fn read_listing(body: &[u8], origin: &str) -> Result<Listing, CollectorError> {
    if first_byte(body) == Some(b'[') {
        return Ok(Listing {
            items: parse(body, origin)?,
            next_page: None,
        });
    }
    let answer: Page = parse(body, origin)?;
    let more = answer.page < answer.page_count && !answer.items.is_empty();
    Ok(Listing {
        items: answer.items,
        next_page: more.then_some(answer.page + 1),
    })
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// `body` as JSON of type `T`; an error naming `origin` (a URL without a
/// password: the client's URLs hold none) and what is wrong otherwise
/// ([`carat_collector::http::parse_json`]).
pub fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    origin: &str,
) -> Result<T, CollectorError> {
    carat_collector::http::parse_json(
        body,
        origin,
        "the management API's JSON (is the URL the management plugin's?)",
    )
}

/// The names (`/api/vhosts`) of the broker's virtual hosts.
pub fn vhost_names(vhosts: &[Map<String, Value>]) -> Vec<String> {
    vhosts
        .iter()
        .filter_map(|v| v.get("name")?.as_str().map(str::to_owned))
        .collect()
}

/// `name` for a URL path segment: everything but unreserved characters
/// percent-encoded (the default vhost `/` is `%2F`).
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
