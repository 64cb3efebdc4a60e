//! coturn launcher: `turnserver` on free ports with long-term users, `turnutils_uclient` runs.
