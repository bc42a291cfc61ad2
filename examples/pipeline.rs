//! A streaming pipeline built with the engine's API and no SQL: read JSON orders, keep the large
//! ones, compute a discounted amount, and write the result as JSON to another topic.
//!
//! ```sh
//! cargo run --example pipeline
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::Operator as BinaryOp;
use datafusion::physical_expr::expressions::{binary, col, lit};
use eddy::engine::{
    Codec, EventTime, Filter, Format, Operator, Pipeline, ProcessingLog, Project, Sink, Source,
};
use eddy::log::{Log, LogOptions, ReadLimits, Record, TopicConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("eddy-pipeline-{}", std::process::id()));
    let log = Log::open(&dir, LogOptions::default())?;
    let orders = log.create_topic("orders", TopicConfig::with_partitions(1))?;
    let large = log.create_topic("large_orders", TopicConfig::with_partitions(1))?;
    for (id, amount) in [(1, 5.0), (2, 250.0), (3, 12.5), (4, 999.0)] {
        let value = format!(r#"{{"id": {id}, "amount": {amount}}}"#);
        orders.partition(0)?.append(&[Record::new(
            None::<&str>,
            Some(value),
            1_700_000_000_000 + id,
        )])?;
    }

    // Orders have no key and two value columns.
    let value_fields = vec![
        Field::new("ID", DataType::Int64, true),
        Field::new("AMOUNT", DataType::Float64, true),
    ];
    let source = Source::new(
        orders.clone(),
        Codec::new(Format::None, vec![], false)?,
        Codec::new(Format::Json, value_fields, true)?,
        vec![],
        EventTime::RecordTimestamp,
    );
    let input = source.schema();

    // WHERE AMOUNT > 10
    let predicate = binary(col("AMOUNT", &input)?, BinaryOp::Gt, lit(10.0), &input)?;
    let filter = Filter::new(predicate, input.clone());

    // SELECT ID, AMOUNT * 0.9 AS DISCOUNTED, plus the row time and tombstone flag the sink uses.
    let out_schema = Arc::new(Schema::new(vec![
        Field::new("ID", DataType::Int64, true),
        Field::new("DISCOUNTED", DataType::Float64, true),
        Field::new("ROWTIME", DataType::Int64, false),
        Field::new("__NULL_VALUE", DataType::Boolean, false),
    ]));
    let project = Project::new(
        vec![
            col("ID", &input)?,
            binary(col("AMOUNT", &input)?, BinaryOp::Multiply, lit(0.9), &input)?,
            col("ROWTIME", &input)?,
            col("__NULL_VALUE", &input)?,
        ],
        out_schema.clone(),
    );

    let sink = Sink {
        window: None,
        topic: large.clone(),
        key: Codec::new(Format::None, vec![], false)?,
        value: Codec::new(
            Format::Json,
            out_schema.fields()[..2]
                .iter()
                .map(|f| f.as_ref().clone())
                .collect(),
            true,
        )?,
        key_columns: vec![],
        value_columns: vec![0, 1],
        timestamp_column: 2,
        timestamp_format: None,
        null_value_column: Some(3),
        null_key_if_all_null: true,
        headers_column: None,
    };
    let operators: Vec<Box<dyn Operator>> = vec![Box::new(filter), Box::new(project)];
    let mut pipeline = Pipeline::new(
        &log,
        "large-orders".into(),
        source,
        operators,
        Some(sink),
        true,
        None,
    )?;
    for line in pipeline.describe() {
        println!("{line}");
    }
    let consumed = pipeline.run_available(&log, &ProcessingLog::new(log.clone()))?;
    println!("consumed {consumed} orders");
    for r in large.partition(0)?.read(0, ReadLimits::default())? {
        println!(
            "{}",
            String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default())
        );
    }
    drop((pipeline, orders, large, log));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
