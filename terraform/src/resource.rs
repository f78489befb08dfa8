//! What every resource of the provider does the same way, once: the plugin protocol's
//! `Resource` (state types, provider client, private state) is implemented by [`Adapter`] for
//! any [`Managed`] resource, which says only what is its own: its schema and checks, how its
//! id is read from a state and from an import id, how it is fetched, planned, written and
//! deleted, and how an API error is pinned to its attributes.
//!
//! The shared rules: a read of a state whose id is not known yet, or before the provider is
//! configured, keeps the state; an object the API no longer has (404) drops out of the state on
//! read and counts as destroyed; a failed update keeps the prior state (a null state would make
//! Terraform forget the object); the private state is always empty.

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tf_provider::schema::Schema;
use tf_provider::value::ValueEmpty;
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::client::{ApiError, ApiResult, Client, Project};
use crate::provider::SharedClient;

/// A resource of the provider, served to Terraform through [`Adapter`].
#[async_trait]
pub trait Managed: Send + Sync + 'static {
    /// The state (and configuration) Terraform stores.
    type State: Serialize + DeserializeOwned + Send + Sync;
    /// What names one object at the API (its project and name, its id, …).
    type Id: Send + Sync;

    /// The object in diagnostics, with its article: `the consumer` ("Cannot read the
    /// consumer", "Cannot import the consumer").
    const NOUN: &'static str;
    /// What creating does to it: "Cannot {CREATE_VERB} {NOUN}" when it fails.
    const CREATE_VERB: &'static str;
    /// What a change in place does, likewise; `None` when every change replaces the object
    /// (see `replaces`): an update then sends nothing and the planned state is the new state.
    const UPDATE_VERB: Option<&'static str>;
    /// What destroying does to it, likewise.
    const DESTROY_VERB: &'static str;

    fn schema(&self) -> Schema;

    /// Reports what is wrong with a configuration (values not known yet are not checked).
    fn validate(&self, diags: &mut Diagnostics, config: &Self::State);

    /// The object a state is about; `None` while that is not known.
    fn id(state: &Self::State) -> Option<Self::Id>;

    /// Reports an API failure, on the attribute it is about when the API names one.
    fn report(diags: &mut Diagnostics, summary: &str, err: &ApiError);

    /// The object as the API has it now; `Ok(None)` (or a 404) when it does not exist. `prior`
    /// is the state it is read for (none on import): what the API does not return, or spells
    /// otherwise, is taken from there.
    async fn fetch(
        &self,
        client: &Client,
        id: &Self::Id,
        prior: Option<&Self::State>,
    ) -> ApiResult<Option<Self::State>>;

    /// The planned state: what the configuration leaves to the provider filled in. `prior` is
    /// the state a change starts from (none for a new object).
    fn plan(
        &self,
        prior: Option<&Self::State>,
        proposed: Self::State,
        config: &Self::State,
    ) -> Self::State;

    /// The attributes whose change from `prior` to `planned` replaces the object.
    fn replaces(prior: &Self::State, planned: &Self::State) -> Vec<AttributePath>;

    /// Marks what the API decides when it creates the object as known only after apply (on a
    /// new object, and on one a change replaces).
    fn unknown_computed(state: &mut Self::State) {
        _ = state;
    }

    /// Writes the planned object: creates it (`prior` none) or changes it in place. Its new
    /// state, or `None` with an error under `summary` ("Cannot add the consumer") reported:
    /// nothing was created, or the object is as it was. A state with an error reported means
    /// the object exists but is not entirely as planned.
    async fn write(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        prior: Option<&Self::State>,
        planned: &Self::State,
        summary: &str,
    ) -> Option<Self::State>;

    /// Deletes the object (a 404 counts as done).
    async fn delete(&self, client: &Client, id: &Self::Id) -> ApiResult<()>;

    /// The object an import id names; `None` with an error reported when it names none.
    fn import_id(diags: &mut Diagnostics, raw: &str) -> Option<Self::Id>;

    /// Why importing `raw` found nothing: `api_404` when the API answered 404, else the lookup
    /// worked and the object is not there.
    fn import_missing(raw: &str, id: &Self::Id, api_404: bool) -> String;
}

/// The attributes among `identity` (name, prior value, planned value) whose planned value
/// differs: a change of any of them replaces the object.
pub fn changed<T: PartialEq>(identity: &[(&'static str, &T, &T)]) -> Vec<AttributePath> {
    identity
        .iter()
        .filter(|(_, prior, planned)| prior != planned)
        .map(|(name, ..)| AttributePath::new(*name))
        .collect()
}

/// The state a write of project settings kept, read back from the project the API returned;
/// `None` with an error reported when the write failed or the project does not hold it.
pub fn kept<R: Managed>(
    diags: &mut Diagnostics,
    summary: &str,
    written: ApiResult<Project>,
    read_back: impl FnOnce(&Project) -> Option<R::State>,
) -> Option<R::State> {
    match written {
        Ok(project) => {
            let state = read_back(&project);
            if state.is_none() {
                diags.root_error(
                    summary.to_owned(),
                    format!("The API did not keep {}.", R::NOUN),
                );
            }
            state
        }
        Err(e) => {
            R::report(diags, summary, &e);
            None
        }
    }
}

/// A [`Managed`] resource with the provider's client: what Terraform talks to.
pub struct Adapter<R> {
    client: SharedClient,
    resource: R,
}

impl<R: Managed> Adapter<R> {
    pub fn new(client: SharedClient, resource: R) -> Self {
        Self { client, resource }
    }
}

#[async_trait]
impl<R: Managed> Resource for Adapter<R> {
    type State<'a> = R::State;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(self.resource.schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        self.resource.validate(diags, &config);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some(id) = R::id(&state) else {
            return Some((state, private_state));
        };
        let Some(client) = self.client.get(diags) else {
            return Some((state, private_state));
        };
        match self.resource.fetch(&client, &id, Some(&state)).await {
            Ok(Some(fresh)) => Some((fresh, private_state)),
            // Removed elsewhere (or its project is gone): the resource is gone.
            Ok(None) => None,
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                R::report(diags, &format!("Cannot read {}", R::NOUN), &e);
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed_state: Self::State<'a>,
        config_state: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = self.resource.plan(None, proposed_state, &config_state);
        R::unknown_computed(&mut planned);
        Some((planned, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        proposed_state: Self::State<'a>,
        config_state: Self::State<'a>,
        prior_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut planned = self
            .resource
            .plan(Some(&prior_state), proposed_state, &config_state);
        let replace = R::replaces(&prior_state, &planned);
        if !replace.is_empty() {
            R::unknown_computed(&mut planned);
        }
        Some((planned, prior_private_state, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Self::State<'a>,
        prior_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(prior_private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags)?;
        let summary = format!("Cannot {} {}", R::CREATE_VERB, R::NOUN);
        let state = self
            .resource
            .write(diags, &client, None, &planned_state, &summary)
            .await?;
        Some((state, planned_private_state))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        planned_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some(verb) = R::UPDATE_VERB else {
            return Some((planned_state, planned_private_state));
        };
        // On failure the object is as it was: hand back the prior state.
        let Some(client) = self.client.get(diags) else {
            return Some((prior_state, planned_private_state));
        };
        let summary = format!("Cannot {verb} {}", R::NOUN);
        match self
            .resource
            .write(diags, &client, Some(&prior_state), &planned_state, &summary)
            .await
        {
            Some(state) => Some((state, planned_private_state)),
            None => Some((prior_state, planned_private_state)),
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        _planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags)?;
        let id = R::id(&prior_state)?;
        match self.resource.delete(&client, &id).await {
            Ok(()) => Some(()),
            Err(e) if e.is_not_found() => Some(()),
            Err(e) => {
                let summary = format!("Cannot {} {}", R::DESTROY_VERB, R::NOUN);
                R::report(diags, &summary, &e);
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        raw: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let id = R::import_id(diags, &raw)?;
        let client = self.client.get(diags)?;
        let summary = format!("Cannot import {}", R::NOUN);
        match self.resource.fetch(&client, &id, None).await {
            Ok(Some(state)) => Some((state, ValueEmpty::default())),
            Ok(None) => {
                diags.root_error(summary, R::import_missing(&raw, &id, false));
                None
            }
            Err(e) if e.is_not_found() => {
                diags.root_error(summary, R::import_missing(&raw, &id, true));
                None
            }
            Err(e) => {
                R::report(diags, &summary, &e);
                None
            }
        }
    }
}
