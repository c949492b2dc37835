from underway.cli import main

main()
