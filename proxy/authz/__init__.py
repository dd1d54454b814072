"""Authorization: which route a request is (`routes`), and whether an identity may use it (`policy`)."""
