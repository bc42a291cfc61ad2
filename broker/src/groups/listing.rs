//! FindCoordinator, DescribeGroups and ListGroups: where groups live (this broker) and what
//! they are doing.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::State;
use crate::admin::{str, NODE_ID};
use crate::Broker;

pub(crate) fn find_coordinator(
    b: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // Key type 1 is a transactional id: transactions are not served.
    let error = if req.key_type == 1 {
        ResponseError::CoordinatorNotAvailable.code()
    } else {
        0
    };
    let (host, port) = (
        str(b.config.advertised_host.clone()),
        i32::from(b.config.advertised_port),
    );
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(if error == 0 { NODE_ID } else { -1 }))
                    .with_host(if error == 0 { host.clone() } else { str("") })
                    .with_port(if error == 0 { port } else { -1 })
                    .with_error_code(error)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if error != 0 {
        return FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(host)
        .with_port(port)
}

pub(crate) fn describe_groups(
    b: &Arc<Broker>,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let committed = b.log.offset_groups();
    let mut groups = b.groups.groups.lock();
    let described = req
        .groups
        .into_iter()
        .map(|id| {
            let name = id.as_str().to_string();
            let d = DescribedGroup::default().with_group_id(id);
            match groups.get_mut(&name) {
                Some(g) => {
                    let protocol = g.protocol.clone().unwrap_or_default();
                    let members = g
                        .members
                        .iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str(m.id.clone()))
                                .with_group_instance_id(m.instance_id.clone().map(str))
                                .with_client_id(str(m.client_id.clone()))
                                .with_client_host(str(format!("/{}", m.client_host)))
                                .with_member_metadata(
                                    m.protocols
                                        .iter()
                                        .find(|(n, _)| *n == protocol)
                                        .map(|(_, md)| md.clone())
                                        .unwrap_or_default(),
                                )
                                .with_member_assignment(m.assignment.clone())
                        })
                        .collect();
                    d.with_group_state(str(g.state.name()))
                        .with_protocol_type(str(g.protocol_type.clone().unwrap_or_default()))
                        .with_protocol_data(str(protocol))
                        .with_members(members)
                }
                // A group known only by its committed offsets is empty; any other is dead.
                None if committed.contains(&name) => d
                    .with_group_state(str("Empty"))
                    .with_protocol_type(str("consumer")),
                None => d.with_group_state(str("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

pub(crate) fn list_groups(b: &Arc<Broker>, req: ListGroupsRequest) -> ListGroupsResponse {
    let mut all: Vec<(String, &'static str, String)> = b
        .groups
        .names()
        .into_iter()
        .map(|(n, s, t)| (n, s.name(), t.unwrap_or_else(|| "consumer".into())))
        .collect();
    for g in b.log.offset_groups() {
        if !all.iter().any(|(n, _, _)| *n == g) {
            all.push((g, State::Empty.name(), "consumer".into()));
        }
    }
    all.sort();
    let filter = &req.states_filter;
    let groups = all
        .into_iter()
        .filter(|(_, state, _)| {
            filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(state))
        })
        .map(|(name, state, protocol_type)| {
            ListedGroup::default()
                .with_group_id(GroupId(str(name)))
                .with_protocol_type(str(protocol_type))
                .with_group_state(str(state))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
