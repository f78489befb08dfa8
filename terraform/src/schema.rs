//! Schema building blocks shared by the provider, its resources and its data source: typed
//! attributes with a plain description, and the version-1 schema every block here declares.

use std::collections::HashMap;

use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};

/// The attributes of a block by name.
pub type Attributes = HashMap<String, Attribute>;

/// An attribute of `attr_type` with a plain-text description, neither sensitive nor deprecated.
pub fn attribute(
    attr_type: AttributeType,
    description: impl ToString,
    constraint: AttributeConstraint,
) -> Attribute {
    Attribute {
        attr_type,
        description: Description::plain(description),
        constraint,
        ..Default::default()
    }
}

/// A string attribute.
pub fn string(description: impl ToString, constraint: AttributeConstraint) -> Attribute {
    attribute(AttributeType::String, description, constraint)
}

/// A bool attribute.
pub fn boolean(description: impl ToString, constraint: AttributeConstraint) -> Attribute {
    attribute(AttributeType::Bool, description, constraint)
}

/// `attribute`, marked sensitive: Terraform hides its value in plans and output.
pub fn sensitive(attribute: Attribute) -> Attribute {
    Attribute {
        sensitive: true,
        ..attribute
    }
}

/// The (version 1) schema of a block with `attributes`.
pub fn schema(description: impl ToString, attributes: Attributes) -> Schema {
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::plain(description),
            attributes,
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_fill_what_the_attribute_literals_did() {
        let a = sensitive(string("the key", AttributeConstraint::Computed));
        assert_eq!(a.attr_type, AttributeType::String);
        assert_eq!(a.description.content, "the key");
        assert!(a.sensitive && !a.deprecated);
        let s = schema("a block", Attributes::from([("on".into(), a)]));
        assert_eq!((s.version, s.block.version), (1, 1));
        assert_eq!(s.block.attributes.len(), 1);
    }
}
