//! Elasticsearch (HoneyPy's elastichoney-style plugin, fixed): a 1.4.1 node's REST API with
//! real HTTP framing and valid JSON for `/`, `/_nodes`, `/_search` and `/_cat/indices`.

use std::sync::Arc;

use apiary_event::Transport;
use serde::Deserialize;
use serde_json::json;

use super::http::{Request, Response};
use super::web::serve_http;
use super::{Handler, ServiceInfo, TcpService, options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "elasticsearch",
    aliases: &["Elasticsearch"],
    protocol: "http",
    description: "Elasticsearch 1.4.1 REST API (cluster banner, nodes, search, cat indices)",
    transports: &[Transport::Tcp],
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The node name in the banner (HoneyPy's "Flake").
    #[serde(default = "default_node")]
    node_name: String,
    /// The cluster name.
    #[serde(default = "default_cluster")]
    cluster_name: String,
}

fn default_node() -> String {
    "Flake".into()
}

fn default_cluster() -> String {
    "elasticsearch".into()
}

struct Elasticsearch {
    node_name: String,
    cluster_name: String,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    Ok(Handler::Tcp(Arc::new(Elasticsearch {
        node_name: o.node_name,
        cluster_name: o.cluster_name,
    })))
}

/// The real 1.4.1 release's build (HoneyPy mixed a 2016 build stamp with 1.4.1).
const BUILD_HASH: &str = "89d3241d670db65f994242c8e8383b169779e2d4";
const NODE_ID: &str = "x1Tq5Fd3RUWp8dSLJ2ZbXg";

const JSON: &str = "application/json; charset=UTF-8";

/// Jackson's pretty printer, as Elasticsearch 1.x writes `?pretty` and its banner: two-space
/// indents and ` : ` between keys and values.
fn pretty(v: &serde_json::Value) -> String {
    fn go(v: &serde_json::Value, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth + 1);
        let end = "  ".repeat(depth);
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                out.push_str("{\n");
                for (i, (k, v)) in m.iter().enumerate() {
                    out.push_str(&pad);
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push_str(" : ");
                    go(v, depth + 1, out);
                    if i + 1 < m.len() {
                        out.push(',');
                    }
                    out.push('\n');
                }
                out.push_str(&end);
                out.push('}');
            }
            serde_json::Value::Array(a) if !a.is_empty() => {
                out.push_str("[ ");
                for (i, v) in a.iter().enumerate() {
                    go(v, depth, out);
                    if i + 1 < a.len() {
                        out.push_str(", ");
                    }
                }
                out.push_str(" ]");
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, 0, &mut out);
    out.push('\n');
    out
}

impl Elasticsearch {
    /// The banner in Elasticsearch's own key order (serde_json would sort the keys).
    fn banner(&self) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        format!(
            "{{\n  \"status\" : 200,\n  \"name\" : {},\n  \"cluster_name\" : {},\n  \
             \"version\" : {{\n    \"number\" : \"1.4.1\",\n    \"build_hash\" : \"{BUILD_HASH}\",\n    \
             \"build_timestamp\" : \"2014-11-26T15:49:29Z\",\n    \"build_snapshot\" : false,\n    \
             \"lucene_version\" : \"4.10.2\"\n  }},\n  \"tagline\" : \"You Know, for Search\"\n}}\n",
            q(&self.node_name),
            q(&self.cluster_name)
        )
    }

    fn nodes(&self, conn: &Conn) -> serde_json::Value {
        let ip = conn.ctx().local.ip().to_canonical().to_string();
        let port = conn.ctx().local.port();
        json!({
            "cluster_name": self.cluster_name,
            "nodes": {
                NODE_ID: {
                    "name": self.node_name,
                    "transport_address": format!("inet[/{ip}:9300]"),
                    "host": "elk",
                    "ip": "127.0.1.1",
                    "version": "1.4.1",
                    "build": &BUILD_HASH[..7],
                    "http_address": format!("inet[/{ip}:{port}]"),
                    "settings": {
                        "path": { "logs": "/var/log/elasticsearch", "home": "/usr/share/elasticsearch" },
                        "cluster": { "name": self.cluster_name },
                        "name": self.node_name
                    },
                    "os": {
                        "refresh_interval_in_millis": 1000,
                        "available_processors": 2,
                        "cpu": { "vendor": "Intel", "model": "Xeon", "mhz": 2400, "total_cores": 2 },
                        "mem": { "total_in_bytes": 4_143_050_752u64 }
                    },
                    "process": { "refresh_interval_in_millis": 1000, "id": 912, "max_file_descriptors": 65535, "mlockall": false },
                    "jvm": {
                        "pid": 912,
                        "version": "1.7.0_65",
                        "vm_name": "OpenJDK 64-Bit Server VM",
                        "vm_version": "24.65-b04",
                        "vm_vendor": "Oracle Corporation",
                        "start_time_in_millis": 1_416_917_216_218u64
                    },
                    "network": {
                        "refresh_interval_in_millis": 5000,
                        "primary_interface": { "address": "127.0.1.1", "name": "eth0", "mac_address": "08:01:C7:3F:15:DD" }
                    },
                    "transport": { "bound_address": "inet[/0:0:0:0:0:0:0:0:9300]", "publish_address": format!("inet[/{ip}:9300]") },
                    "http": { "bound_address": format!("inet[/0:0:0:0:0:0:0:0:{port}]"), "publish_address": format!("inet[/{ip}:{port}]"), "max_content_length_in_bytes": 104_857_600 },
                    "plugins": []
                }
            }
        })
    }

    fn respond(&self, conn: &Conn, req: &Request) -> Response {
        let path = req.path().trim_end_matches('/');
        let json_resp = |status: u16, v: serde_json::Value| Response::new(status, JSON, pretty(&v));
        match (req.method.as_str(), path) {
            ("GET" | "HEAD", "") => Response::new(200, JSON, self.banner()),
            ("GET", p) if p == "/_nodes" || p.starts_with("/_nodes/") => {
                json_resp(200, self.nodes(conn))
            }
            ("GET" | "POST", p) if p == "/_search" || p.ends_with("/_search") => json_resp(
                200,
                json!({
                    "took": 6,
                    "timed_out": false,
                    "_shards": { "total": 6, "successful": 6, "failed": 0 },
                    "hits": {
                        "total": 1,
                        "max_score": 1.0,
                        "hits": [{
                            "_index": ".kibana",
                            "_type": "index-pattern",
                            "_id": "logstash-*",
                            "_score": 1.0,
                            "_source": {
                                "title": "logstash-*",
                                "timeFieldName": "@timestamp",
                                "customFormats": "{}",
                                "fields": "[{\"type\":\"string\",\"indexed\":true,\"analyzed\":true,\"doc_values\":false,\"name\":\"host\",\"count\":0}]"
                            }
                        }]
                    }
                }),
            ),
            ("GET", "/_cat/indices") => Response::new(
                200,
                "text/plain; charset=UTF-8",
                "green open .kibana             1 0  1 0   2.4kb   2.4kb \n\
                 green open logstash-2014.11.25 5 0 43 0 162.7kb 162.7kb \n",
            ),
            ("GET", "/_cluster/health") => json_resp(
                200,
                json!({
                    "cluster_name": self.cluster_name,
                    "status": "green",
                    "timed_out": false,
                    "number_of_nodes": 1,
                    "number_of_data_nodes": 1,
                    "active_primary_shards": 6,
                    "active_shards": 6,
                    "relocating_shards": 0,
                    "initializing_shards": 0,
                    "unassigned_shards": 0
                }),
            ),
            (method, _) => Response::new(
                400,
                "text/plain; charset=UTF-8",
                format!("No handler found for uri [{}] and method [{method}]", req.target),
            ),
        }
    }
}

#[async_trait::async_trait]
impl TcpService for Elasticsearch {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        serve_http(
            conn,
            None,
            |conn, req| self.respond(conn, req),
            |_, status| Response::new(status, "text/plain; charset=UTF-8", ""),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pretty_matches_jackson_and_is_valid_json() {
        let v = serde_json::json!({"a": 1, "b": {"c": [1, 2]}, "d": []});
        let s = super::pretty(&v);
        assert_eq!(
            s,
            "{\n  \"a\" : 1,\n  \"b\" : {\n    \"c\" : [ 1, 2 ]\n  },\n  \"d\" : []\n}\n"
        );
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }
}
