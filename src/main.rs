#[global_allocator]
static ALLOCATOR: sluice::alloc::Allocator = sluice::alloc::Allocator;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
