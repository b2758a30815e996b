//! `notifications` binary: the shell's `main` for [`notifications::Notifications`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::shell::main::<notifications::Notifications>().await
}
