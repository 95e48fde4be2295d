from fsbill.entry import main

main()
