//! The hickory request handler: takes the client's location from EDNS
//! Client Subnet or the source address, asks the zone, and answers with
//! the ECS option echoed at the right scope.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::Record;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::rrl::Verdict;
use crate::state::State;

/// UDP payload size this server advertises and answers within (the 2020
/// DNS flag day value, which avoids IP fragmentation).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers queries from the current [`State`].
#[derive(Clone)]
pub struct Handler {
    state: Arc<State>,
}

impl Handler {
    /// A handler reading `state`.
    pub fn new(state: Arc<State>) -> Self {
        Handler { state }
    }
}

/// The EDNS Client Subnet of a request, when it carries one.
fn client_subnet(request: &Request) -> Option<ClientSubnet> {
    match request.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(subnet) => Some(*subnet),
        _ => None,
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let mut response_edns = request.edns.as_ref().map(|edns| {
            let mut ours = Edns::new();
            ours.set_max_payload(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        let zone = self.state.zone();
        let mut answer = None;
        let mut scope = 0;
        let subnet = client_subnet(request);
        let mut qtype_label = "-";

        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            metadata.response_code = ResponseCode::BADVERS;
        } else if request.metadata.op_code != OpCode::Query {
            metadata.response_code = ResponseCode::NotImp;
        } else {
            match request.request_info() {
                Err(_) => metadata.response_code = ResponseCode::FormErr,
                Ok(info) => {
                    let query = info.query;
                    qtype_label = crate::metrics::qtype_label(query.query_type());
                    // A source prefix of 0 asks that the client's address
                    // not be used (RFC 7871 §7.1.2): use the resolver's.
                    let client: IpAddr = match subnet {
                        Some(s) if s.source_prefix() > 0 => s.addr(),
                        _ => request.src().ip(),
                    };
                    let locator = self.state.locator();
                    let health = self.state.health();
                    let result = zone.answer(
                        query.name(),
                        query.query_type(),
                        query.query_class(),
                        &health,
                        || {
                            let location = locator.as_ref()?.locate(client);
                            scope = location.prefix_len;
                            location.position
                        },
                    );
                    metadata.response_code = result.rcode;
                    metadata.authoritative = result.authoritative;
                    if !result.located {
                        scope = 0;
                    }
                    answer = Some(result);
                }
            }
        }

        if let (Some(edns), Some(subnet)) = (response_edns.as_mut(), subnet) {
            let scope = if subnet.source_prefix() == 0 {
                0
            } else {
                scope
            };
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(
                    subnet.addr(),
                    subnet.source_prefix(),
                    scope,
                )));
        }

        // Over UDP, past the client prefix's rate: an empty truncated
        // answer (so a real resolver asks over TCP), or none at all.
        if request.protocol() == Protocol::Udp {
            let question = request
                .queries
                .queries()
                .first()
                .map(|q| (q.name(), q.query_type()));
            let verdict =
                self.state
                    .rrl()
                    .check(request.src().ip(), question, metadata.response_code);
            if verdict != Verdict::Send {
                metrics::counter!("parapet_dns_rrl_total", "action" => verdict.label())
                    .increment(1);
            }
            match verdict {
                Verdict::Send => {}
                Verdict::Slip => {
                    metadata.truncation = true;
                    answer = None;
                }
                Verdict::Drop => {
                    return ResponseInfo::from(Header {
                        metadata,
                        counts: HeaderCounts::default(),
                    })
                }
            }
        }

        let empty: Vec<Record> = Vec::new();
        let (answers, authority, additionals) = match &answer {
            Some(a) => (&a.answers, &a.authority, &a.additionals),
            None => (&empty, &empty, &empty),
        };
        let builder = MessageResponseBuilder::new(&request.queries, response_edns.as_ref());
        let response = builder.build(
            metadata,
            answers.iter(),
            authority.iter(),
            std::iter::empty(),
            additionals.iter(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, client = %request.src(), "cannot send the response");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };

        let rcode = format!("{:?}", info.response_code).to_ascii_uppercase();
        let pops = answer
            .as_ref()
            .map(|a| a.pops.as_slice())
            .unwrap_or_default();
        self.state.record(&crate::metrics::QueryRecord {
            client: request.src(),
            protocol: request.protocol(),
            query: request.queries.queries().first(),
            qtype: qtype_label,
            rcode: &rcode,
            truncated: info.truncation,
            subnet,
            scope,
            pops,
        });
        info
    }
}
