"""Everything that touches the outside: the storage adapter (the one `google.cloud`
importer), the guarded URL fetcher and the category registry."""
