"""The admission webhook: AdmissionReview handling for pod DELETE and eviction."""
