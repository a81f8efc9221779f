from hquery.cli import main

main()
