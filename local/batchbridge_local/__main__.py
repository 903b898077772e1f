from batchbridge_local.cli import main

main()
