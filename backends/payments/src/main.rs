//! `payments` binary: the shell's `main` for [`payments::Payments`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::shell::main::<payments::Payments>().await
}
