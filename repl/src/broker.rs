//! `eddy broker`: the data directory served over Kafka's wire protocol alone, and the Kafka
//! listener options `eddy server` shares.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::Args;
use eddy_broker::{Broker, BrokerConfig};
use eddy_log::Log;

#[derive(Args)]
pub struct BrokerArgs {
    /// The address Kafka clients connect to (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    #[command(flatten)]
    options: KafkaOptions,
}

/// What a Kafka listener tells clients and allows, beside its address.
#[derive(Args, Clone)]
pub struct KafkaOptions {
    /// HOST:PORT that Metadata tells clients to connect to (default: the listen address, with
    /// 127.0.0.1 for an unspecified IP).
    #[arg(
        long = "kafka-advertised",
        visible_alias = "advertised",
        value_name = "HOST:PORT"
    )]
    advertised: Option<String>,
    /// Create topics that clients ask metadata for, as Kafka's `auto.create.topics.enable`.
    #[arg(long = "kafka-auto-create-topics", default_value_t = true, action = clap::ArgAction::Set)]
    auto_create_topics: bool,
    /// Partitions of topics created without a count (Kafka's `num.partitions`).
    #[arg(long = "kafka-default-partitions", default_value_t = 1)]
    default_partitions: u32,
}

impl KafkaOptions {
    /// The broker's settings for a listener bound to `bound`.
    pub fn config(&self, bound: SocketAddr) -> Result<BrokerConfig> {
        let mut config = BrokerConfig::advertising(bound);
        if let Some(adv) = &self.advertised {
            let (host, port) = adv
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .with_context(|| format!("--kafka-advertised {adv}: expected HOST:PORT"))?;
            config.advertised_host = host.trim_matches(['[', ']']).to_string();
            config.advertised_port = port;
        }
        if self.default_partitions == 0 {
            bail!("--kafka-default-partitions must be at least 1");
        }
        config.auto_create_topics = self.auto_create_topics;
        config.default_partitions = self.default_partitions;
        Ok(config)
    }
}

/// Binds `listen` and serves `log` over Kafka's protocol on the current runtime.
pub async fn start(
    log: Log,
    listen: SocketAddr,
    options: &KafkaOptions,
) -> Result<eddy_broker::Listener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let config = options.config(listener.local_addr()?)?;
    let broker = Broker::new(log, config);
    Ok(broker.serve(listener)?)
}

pub fn run(log: Log, args: BrokerArgs) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = start(log, args.listen, &args.options).await?;
        // Scripts and tests read the address from this line (with --listen ...:0).
        println!("eddy kafka listener on {}", listener.addr);
        crate::server::shutdown_signal().await;
        listener.stop().await;
        Ok(())
    })
}
