#[global_allocator]
static ALLOCATOR: sluice::Allocator = sluice::Allocator;

fn main() -> std::process::ExitCode {
    sluice::main()
}
