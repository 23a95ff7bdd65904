//! `nabla devices`: the backends of `--device` this build has (`cuda` and
//! `wgpu` are cargo features) and the graphics adapters wgpu finds here.

#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &DevicesArgs) -> anyhow::Result<()> {
    let backends = nabla_vision::device::inventory();
    if a.json {
        return crate::output::OutputArgs::print_json(&backends);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = backends
        .iter()
        .map(|b| {
            vec![
                b.device.name().into(),
                yes_no(b.compiled_in),
                b.detail.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::output::table(&["--device", "in this build", "runs on"], &rows)
    );
    let adapters: Vec<Vec<String>> = backends
        .iter()
        .flat_map(|b| &b.adapters)
        .map(|a| {
            vec![
                a.name.clone(),
                a.kind.clone(),
                a.api.clone(),
                a.driver.clone(),
            ]
        })
        .collect();
    if !adapters.is_empty() {
        print!(
            "\nwgpu's adapters:\n{}",
            crate::output::table(&["adapter", "kind", "API", "driver"], &adapters)
        );
    }
    Ok(())
}
