"""The application: stages (resolve, convert, persist), the pipeline's rules, the service
behind the cloud functions, and the command line."""
