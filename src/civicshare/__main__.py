from civicshare.cli import main

main()
