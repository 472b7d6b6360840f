//! What the producer trusts over TLS besides the public roots.

use super::ProducerBuilder;

impl ProducerBuilder {
    /// Trusts the certificates of `pem` (one or more `CERTIFICATE` blocks) as
    /// certificate authorities over TLS, besides the public roots the service's
    /// certificates chain to: for an emulator or broker with a certificate of a
    /// private CA (`hubcat emulator --tls-bind` prints the one it makes). The server's
    /// certificate must still be for the host name connected to. Checked at
    /// [`build`](Self::build).
    ///
    /// ```no_run
    /// # async fn run(ca_pem: &[u8]) -> Result<(), streaming_producer::Error> {
    /// use streaming_producer::Producer;
    ///
    /// let (producer, outcomes) = Producer::builder()
    ///     .connection_string(
    ///         "Endpoint=sb://localhost:5671;SharedAccessKeyName=RootManageSharedAccessKey;\
    ///          SharedAccessKey=SAS_KEY_VALUE;EntityPath=eh1",
    ///     )
    ///     .add_root_certificate_pem(ca_pem)
    ///     .build()
    ///     .await?;
    /// # drop((producer, outcomes)); Ok(()) }
    /// ```
    pub fn add_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.address.root_certificates.push(pem.as_ref().to_vec());
        self
    }
}
